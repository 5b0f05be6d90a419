"""The compute registry: the targets jobs name in COMPUTE, stored in the workspace database."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from flowyard import defaults, paths
from flowyard.compute import sandbox, target_for
from flowyard.compute.base import ComputeTarget
from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.schemas import ComputeCreate, ComputeOut, ComputeUpdate, JobStatus
from flowyard.server.db.models import Compute, Job
from flowyard.server.settings import ServerSettings

LOCAL = "local"
ACTIVE = (JobStatus.PREPARING, JobStatus.RUNNING, JobStatus.FINALIZING)


def names(session: Session) -> list[str]:
    return [LOCAL, *session.scalars(sa.select(Compute.name).order_by(Compute.name))]


def all_computes(session: Session) -> list[Compute]:
    return list(session.scalars(sa.select(Compute).order_by(Compute.name)))


def get(session: Session, name: str) -> Compute:
    compute = session.get(Compute, name)
    if compute is None:
        raise NotFoundError(
            f"Unknown compute {name!r}; this workspace knows: {', '.join(names(session))} "
            "(create one with `flowyard compute create`)."
        )
    return compute


def _check(kind: str, address: str | None, settings: dict[str, Any]) -> None:
    if kind == "ray" and not (address or "").startswith(("http://", "https://")):
        raise InvalidRequestError(
            "A ray compute needs --address, the cluster's dashboard URL (http://HEAD:8265)."
        )
    isolation = settings.get("isolation")
    if isolation is None:
        return
    if kind != "process":
        raise InvalidRequestError(
            f"--isolation applies to process computes only; a {kind} compute's jobs run on "
            "its cluster, away from the workspace host's files."
        )
    if isolation not in sandbox.ISOLATIONS:
        raise InvalidRequestError(
            f"Unknown isolation {isolation!r}; use sandbox (bubblewrap, the default) or none."
        )


def create(session: Session, body: ComputeCreate) -> Compute:
    if body.name == LOCAL or session.get(Compute, body.name) is not None:
        raise ConflictError(f"A compute named {body.name!r} already exists; pick another name.")
    _check(body.type, body.address, body.settings)
    compute = Compute(
        **body.model_dump(), created_at=datetime.now(UTC), updated_at=datetime.now(UTC)
    )
    session.add(compute)
    session.commit()
    return compute


def update(session: Session, name: str, body: ComputeUpdate) -> Compute:
    compute = get(session, name)
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(compute, key, value)
    _check(compute.type, compute.address, compute.settings or {})
    compute.updated_at = datetime.now(UTC)
    session.commit()
    return compute


def delete(session: Session, name: str) -> None:
    compute = get(session, name)
    waiting = session.scalar(
        sa.select(sa.func.count()).where(
            Job.compute == name, Job.status.in_([JobStatus.QUEUED, *ACTIVE])
        )
    )
    if waiting:
        raise ConflictError(
            f"Compute {name!r} has {waiting} queued or running job(s); cancel them or wait "
            "before deleting it."
        )
    session.delete(compute)
    session.commit()


def private_paths(settings: ServerSettings) -> tuple[str, ...]:
    """What no job on the workspace host may see: the server's config folder (credentials, the
    key of a --db-url workspace), the secret key, the database (the whole workspace folder when
    it is one) and the artifacts when they are a local folder."""
    found = [paths.config_dir()]
    if settings.secret_key_file:
        found.append(Path(settings.secret_key_file))
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database)
        if (db.parent / defaults.WORKSPACE_FILE).exists():
            found.append(db.parent)
        else:
            # SQLite keeps recent writes beside the file.
            found += [db.with_name(db.name + end) for end in ("", "-wal", "-shm", "-journal")]
    artifacts = urlsplit(settings.artifacts_destination)
    if artifacts.scheme in ("", "file"):
        found.append(Path(artifacts.path))
    return tuple(str(p.expanduser().absolute()) for p in found)


def target(compute: Compute) -> ComputeTarget:
    """The compute's target object, reused while its settings stay the same (a Ray client
    costs a round trip to the cluster to make)."""
    key = (
        compute.name,
        compute.type,
        compute.address,
        json.dumps(compute.settings or {}, sort_keys=True),
    )
    found = _targets.get(key)
    if found is None:
        found = target_for(compute.type, compute.name, compute.address, compute.settings or {})
        _targets[key] = found
    return found


_targets: dict[tuple[str, str, str | None, str], ComputeTarget] = {}


def counts(session: Session) -> dict[str, dict[str, int]]:
    """Active and queued jobs per compute."""
    rows = session.execute(
        sa.select(Job.compute, Job.status, sa.func.count())
        .where(Job.status.in_([JobStatus.QUEUED, *ACTIVE]))
        .group_by(Job.compute, Job.status)
    )
    found: dict[str, dict[str, int]] = {}
    for compute, status, n in rows:
        slot = found.setdefault(compute, {"active": 0, "queued": 0})
        slot["queued" if status == JobStatus.QUEUED else "active"] += n
    return found


def out(
    compute: Compute, count: dict[str, int] | None = None, *, health: bool = False
) -> ComputeOut:
    result = ComputeOut(
        name=compute.name,
        type=compute.type,
        address=compute.address,
        max_concurrent_jobs=compute.max_concurrent_jobs,
        workspace_url=compute.workspace_url,
        settings=compute.settings or {},
        isolation=target(compute).isolation_detail,
        active_jobs=(count or {}).get("active", 0),
        queued_jobs=(count or {}).get("queued", 0),
    )
    if health:
        state = target(compute).health()
        result.healthy, result.health, result.resources = (
            state.healthy,
            state.detail,
            state.resources,
        )
    return result
