"""The compute registry: the targets jobs name in COMPUTE, stored in the workspace database."""

from __future__ import annotations

import json
import logging
import threading
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from flowyard import defaults, paths
from flowyard.compute import sandbox, target_for
from flowyard.compute.base import ComputeTarget, ContainerPolicy, Health
from flowyard.compute.local import NAME, LocalTarget
from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.schemas import ComputeCreate, ComputeOut, ComputeType, ComputeUpdate, JobStatus
from flowyard.server.db.models import Compute, Job, JobKind, utc_now
from flowyard.server.settings import ServerSettings

log = logging.getLogger(__name__)

LOCAL = NAME

ACTIVE = (JobStatus.PREPARING, JobStatus.RUNNING, JobStatus.FINALIZING)


def takes_slot() -> sa.ColumnElement[bool]:
    """Jobs that hold one of their compute's slots: active runs (a sweep, which the workspace's
    sweep controller runs, holds none; its trials do)."""
    return sa.and_(Job.status.in_(ACTIVE), Job.kind == JobKind.RUN)


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


def _check(
    name: str,
    kind: str,
    address: str | None,
    settings: dict[str, Any],
    before: dict[str, Any] | None = None,
) -> None:
    """Refuse settings compute ``name`` cannot have; ``before``, its settings until now (None
    for a new compute)."""
    if kind == ComputeType.RAY and not (address or "").startswith(("http://", "https://")):
        raise InvalidRequestError(
            "A ray compute needs --address, the cluster's dashboard URL (http://HEAD:8265)."
        )
    _check_containers(settings)
    isolation, image = settings.get("isolation"), settings.get("isolation_image")
    _check_isolation(kind, isolation, image)
    keys = ("isolation", "isolation_image")
    if isolation == sandbox.CONTAINER and (
        before is None or any(before.get(k) != settings.get(k) for k in keys)
    ):
        # A process compute's runners run on this host: its engine and image are checked here,
        # when they are named, without a pull (a request must not wait minutes for one).
        from flowyard.compute.process import ProcessTarget

        ProcessTarget(name, isolation, ContainerPolicy.from_settings(settings), image).check_host()


def _check_isolation(kind: str, isolation: Any, image: Any) -> None:
    if isolation is None and image is None:
        return
    if kind != ComputeType.PROCESS:
        raise InvalidRequestError(
            f"--isolation applies to process computes only; a {kind} compute's jobs run on "
            "its cluster, away from the workspace host's files."
        )
    if isolation is not None and isolation not in sandbox.ISOLATIONS:
        raise InvalidRequestError(
            f"Unknown isolation {isolation!r}; use sandbox (bubblewrap, the default), container "
            "(with --isolation-image) or none."
        )
    if isolation != sandbox.CONTAINER:
        if image is not None:
            raise InvalidRequestError(
                f"--isolation-image applies to --isolation container only, not "
                f"{isolation or 'sandbox'}; add --isolation container, or leave the image out."
            )
        return
    if image is None or image == "":
        raise InvalidRequestError(
            "--isolation container needs --isolation-image, the image every job runs in "
            "(e.g. --isolation-image docker.io/library/python:3.11-slim-bookworm)."
        )
    from flowyard.env.containers import check_image_name

    # Not a string (a number in a settings JSON): refused as no string could spell it.
    check_image_name(image if isinstance(image, str) else f"<{image!r}>", "--isolation-image")


def _check_containers(settings: dict[str, Any]) -> None:
    from flowyard.env.containers import ENGINES

    engine = settings.get("container_engine")
    if engine is not None and engine not in ENGINES:
        raise InvalidRequestError(
            f"Unknown container engine {engine!r}; use {' or '.join(ENGINES)}, or leave it out "
            "to use whichever answers."
        )
    volumes = settings.get("container_volumes") or []
    if not isinstance(volumes, list) or not all(
        isinstance(v, str) and v.startswith("/") for v in volumes
    ):
        raise InvalidRequestError(
            f"--container-volume must name absolute host folders, not {volumes!r}."
        )
    if "/" in volumes:
        raise InvalidRequestError(
            "--container-volume / would let every job mount the whole host (the workspace's "
            "database and keys included); name the data folders jobs need."
        )


def create(session: Session, body: ComputeCreate) -> Compute:
    if body.name == LOCAL or session.get(Compute, body.name) is not None:
        raise ConflictError(f"A compute named {body.name!r} already exists; pick another name.")
    _check(body.name, body.type, body.address, body.settings)
    compute = Compute(**body.model_dump(), created_at=utc_now(), updated_at=utc_now())
    session.add(compute)
    session.commit()
    return compute


def _registered(session: Session, name: str) -> Compute:
    """A compute to change or delete: one that was registered, not ``local``."""
    if name == LOCAL:
        raise ConflictError(
            "Compute 'local' is built in (the machine that submits a job runs it), so it cannot "
            "be changed or deleted; register a compute of your own with `flowyard compute create`."
        )
    return get(session, name)


def update(session: Session, name: str, body: ComputeUpdate) -> Compute:
    compute = _registered(session, name)
    before = dict(compute.settings or {})
    for key, value in body.model_dump(exclude_none=True).items():
        setattr(compute, key, value)
    _check(name, compute.type, compute.address, compute.settings or {}, before)
    compute.updated_at = utc_now()
    session.commit()
    return compute


def delete(session: Session, name: str) -> None:
    compute = _registered(session, name)
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


class _Targets:
    """The target object of each compute, reused while its settings stay the same (a Ray client
    costs a round trip to the cluster to make). The dispatcher's thread and request handlers
    share it, hence the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[tuple[str, str, str | None, str], ComputeTarget] = {}
        self.local = LocalTarget()

    def get(self, compute: Compute) -> ComputeTarget:
        settings = compute.settings or {}
        key = (compute.name, compute.type, compute.address, json.dumps(settings, sort_keys=True))
        with self._lock:
            found = self._found.get(key)
            if found is None:
                # Drop the compute's target for its old settings: it is never asked again.
                for old in [k for k in self._found if k[0] == compute.name]:
                    del self._found[old]
                found = target_for(compute.type, compute.name, compute.address, settings)
                self._found[key] = found
            return found


_targets = _Targets()


def target(compute: Compute) -> ComputeTarget:
    """The compute's target object."""
    return _targets.get(compute)


def lookup(session: Session, name: str) -> ComputeTarget | None:
    """The target of the compute a job names (``local`` included), or None if it is gone."""
    if name == LOCAL:
        return _targets.local
    compute = session.get(Compute, name)
    return None if compute is None else target(compute)


@dataclass(frozen=True)
class Checked:
    """A compute's health, and when it was checked."""

    health: Health
    at: datetime


class HealthChecks:
    """Each compute's last health check in this server process. Checks run in threads of their
    own, one at a time per target, so a compute that hangs holds up only its own check; requests
    read what the last check found. Kept per target object: a compute whose settings change
    starts unchecked, and the old target's results go with it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: weakref.WeakKeyDictionary[ComputeTarget, Checked] = weakref.WeakKeyDictionary()
        self._running: weakref.WeakKeyDictionary[ComputeTarget, threading.Event] = (
            weakref.WeakKeyDictionary()
        )

    def last(self, target: ComputeTarget) -> Checked | None:
        """The last check of ``target``, or None before the first one ends."""
        with self._lock:
            return self._found.get(target)

    def refresh(self, target: ComputeTarget) -> threading.Event:
        """Start a check of ``target`` unless one runs; the event is set when it ends."""
        with self._lock:
            running = self._running.get(target)
            if running is not None:
                return running
            done = self._running[target] = threading.Event()
        # A daemon thread: a check that hangs must not keep the server from exiting.
        threading.Thread(
            target=self._check, args=(target, done), name=f"health-{target.name}", daemon=True
        ).start()
        return done

    def fresh(self, target: ComputeTarget, wait: float) -> Checked | None:
        """A new check if it ends within ``wait`` seconds, else the last one."""
        self.refresh(target).wait(wait)
        return self.last(target)

    def _check(self, target: ComputeTarget, done: threading.Event) -> None:
        try:
            state = target.health()
        except Exception as e:  # a target's bug must not end the thread unseen
            log.exception("health check of compute %s failed", target.name)
            state = Health(False, f"the health check failed: {e}")
        with self._lock:
            self._found[target] = Checked(state, datetime.now(UTC))
            del self._running[target]
        done.set()


health = HealthChecks()


def counts(session: Session) -> dict[str, dict[str, int]]:
    """Active and queued jobs per compute."""
    rows = session.execute(
        sa.select(Job.compute, Job.status, sa.func.count())
        .where(Job.status.in_([JobStatus.QUEUED, *ACTIVE]), Job.kind == JobKind.RUN)
        .group_by(Job.compute, Job.status)
    )
    found: dict[str, dict[str, int]] = {}
    for compute, status, n in rows:
        slot = found.setdefault(compute, {"active": 0, "queued": 0})
        slot["queued" if status == JobStatus.QUEUED else "active"] += n
    return found


def listing(session: Session) -> list[ComputeOut]:
    """Every compute as the API shows it: ``local`` first, then the registered ones by name."""
    found = counts(session)
    return [
        out_local(found.get(LOCAL)),
        *(out(c, found.get(c.name)) for c in all_computes(session)),
    ]


def shown(session: Session, name: str, *, health_wait: float = 0.0) -> ComputeOut:
    """One compute as the API shows it, ``local`` included; ``health_wait`` as for :func:`out`."""
    count = counts(session).get(name)
    if name == LOCAL:
        return out_local(count)
    return out(get(session, name), count, health_wait=health_wait)


def out(
    compute: Compute, count: dict[str, int] | None = None, *, health_wait: float = 0.0
) -> ComputeOut:
    """The compute as the API shows it, with its last health check; ``health_wait`` > 0 asks
    for a new check and waits that long at most for it."""
    found = target(compute)
    return _out(
        found,
        count,
        type=compute.type,
        address=compute.address,
        max_concurrent_jobs=compute.max_concurrent_jobs,
        workspace_url=compute.workspace_url,
        settings=compute.settings or {},
        checked=health.fresh(found, health_wait) if health_wait > 0 else health.last(found),
    )


def out_local(count: dict[str, int] | None = None) -> ComputeOut:
    """``local`` as the API shows it: its health needs no I/O, so it is always current."""
    local = _targets.local
    checked = Checked(local.health(), datetime.now(UTC))
    return _out(
        local,
        count,
        type=LOCAL,
        address=None,
        max_concurrent_jobs=0,
        workspace_url=None,
        settings={},
        checked=checked,
    )


def _out(
    found: ComputeTarget,
    count: dict[str, int] | None,
    *,
    checked: Checked | None,
    **fields: Any,
) -> ComputeOut:
    result = ComputeOut(
        name=found.name,
        isolation=found.isolation_detail,
        containers=found.containers_detail,
        active_jobs=(count or {}).get("active", 0),
        queued_jobs=(count or {}).get("queued", 0),
        **fields,
    )
    if checked is None:
        result.health = "not checked yet"
    else:
        result.healthy, result.health, result.resources = (
            checked.health.healthy,
            checked.health.detail,
            checked.health.resources,
        )
        result.health_checked_at = checked.at
        result.containers = checked.health.containers or result.containers
    return result


def named_target(session: Session, name: str) -> ComputeTarget:
    """The target of the compute a new job names (``local`` included).

    Raises:
        NotFoundError: no compute has that name; the message lists the known ones.
    """
    found = lookup(session, name)
    return found if found is not None else target(get(session, name))
