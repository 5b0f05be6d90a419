"""Re-runs: a new job from an old one's stored snapshot, entry point, environment and options,
with some parameters changed, checked by MLflow's rules like a submit's."""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.orm import Session

from flowyard import mlflow_internals
from flowyard.errors import InvalidRequestError
from flowyard.jobspec import EntryPointSpec
from flowyard.prepared_project import build_command, check_types, entry_point_spec
from flowyard.schemas import JobSubmit
from flowyard.server import mlflow_internals as server_internals
from flowyard.server.auth.tokens import Keys
from flowyard.server.db.models import Job, JobKind
from flowyard.server.services import computes, jobs, snapshots
from flowyard.server.settings import ServerSettings

RERUN_OF = "flowyard.rerun_of"
# Reruns followed up and down a chain at most: a chain is a handful, never thousands.
MAX_CHAIN = 200
_SUFFIX = re.compile(r" \(rerun \d+\)$")

# The submission tags a re-run inherits: where the code came from, not what the run logged.
_RERUN_TAGS = ("mlflow.user", "mlflow.source.", "mlflow.project.entryPoint", "mlflow.project.env")


def rerun(
    session: Session,
    job_id: str,
    parameters: dict[str, str],
    submitted_from: str,
    settings: ServerSettings,
    user: str | None = None,
    secret_env: dict[str, str] | None = None,
    keys: Keys | None = None,
    *,
    run_name: str | None = None,
    compute: str | None = None,
    experiment_id: str | None = None,
    priority: int | None = None,
    env_vars: dict[str, str] | None = None,
) -> tuple[Job, list[str]]:
    """A new job from ``job_id``'s snapshot, entry point, environment and compute, with its
    parameters replaced by ``parameters`` where given.

    ``run_name`` (default: :func:`derived_name`), ``compute``, ``experiment_id``, ``priority``
    and the plain ``env_vars`` (all of them: they replace the old job's) change the rest; None
    keeps the old job's.

    Secret ENV_VARS belong to the user who submitted them: a re-run by that user (``user``,
    None where the workspace has no users) keeps them, anyone else's runs without them. Either
    may send ``secret_env`` of their own, sealed with ``keys`` like a submit's.

    Only jobs on a compute whose runners the workspace starts can be re-run: a local job's
    runner would have to start on the machine that submitted it, which the workspace cannot
    reach.

    Returns:
        The new job, and the names of the old job's secrets it runs without.
    """
    old = jobs.get(session, job_id)
    if old.kind == JobKind.SWEEP:
        raise InvalidRequestError(
            f"Job {job_id} is a sweep, whose trials are the runs; re-run one of its trials, or "
            "submit the sweep again (`flowyard sweep SPEC.yaml`)."
        )
    target = computes.lookup(session, old.compute)
    if target is not None and not target.starts_runners:
        raise InvalidRequestError(
            f"Job {job_id} ran on the submitting machine (COMPUTE {old.compute}), where the "
            "workspace cannot start a runner; run it again from that machine, or submit it to "
            "a compute."
        )
    if compute is not None and compute != old.compute:
        chosen = computes.named_target(session, compute)
        if not chosen.starts_runners:
            raise InvalidRequestError(
                f"Compute {compute} runs jobs on the machine that submits them, where the "
                "workspace cannot start a runner; choose one of "
                f"{', '.join(rerun_computes(session)) or 'the registered computes'}."
            )
    spec = old.options.entry_point_spec or _spec_from_snapshot(session, old, settings)
    resolved, command = with_parameters(spec, old.parameters, parameters)
    tags = server_internals.run_tags(session, job_id)
    inherited = {k: v for k, v in tags.items() if k.startswith(_RERUN_TAGS)}
    by = user or old.user
    if by != old.user:
        inherited["mlflow.user"] = by  # the run is theirs, not the first submitter's
    kept = dict(old.secret_env)
    dropped: list[str] = []
    if by != old.user:
        dropped = sorted(set(kept) - set(secret_env or {}))
        kept = {}
    if dropped:
        submitted_from += (
            f"; without the secret ENV_VARS {', '.join(dropped)}, which stay with their "
            f"submitter {old.user}: send your own in the re-run's secret_env"
        )
    options = replace(old.options, command=command, entry_point_spec=spec)
    if env_vars is not None:
        try:
            options = replace(options, env_vars=dict(env_vars))
        except ValueError as e:
            raise InvalidRequestError(str(e)) from e
    request = JobSubmit(
        experiment_id=experiment_id or old.experiment_id,
        snapshot_id=old.snapshot_id,
        project_uri=old.project_uri,
        entry_point=old.entry_point,
        parameters=resolved,
        environment=old.environment,
        options=options,
        compute=compute or old.compute,
        priority=old.priority if priority is None else priority,
        max_retries=old.max_retries,
        run_name=run_name or derived_name(session, job_id),
        user=by,
        tags={**inherited, RERUN_OF: job_id},
        secret_env=secret_env or {},
    )
    job, _ = jobs.submit(session, request, submitted_from, keys, sealed_env=kept)
    return job, dropped


def rerun_computes(session: Session) -> list[str]:
    """The computes a re-run may go to: those whose runners the workspace starts."""
    return [
        c.name
        for c in computes.all_computes(session)
        if (t := computes.lookup(session, c.name)) is not None and t.starts_runners
    ]


@dataclass(frozen=True)
class RerunForm:
    """What the studio's re-run form offers: the derived name, the computes and experiments to
    choose from, and the old job's secrets the re-run keeps or runs without."""

    name: str
    computes: list[str]
    experiments: dict[str, str]
    secrets_kept: list[str]
    secrets_dropped: list[str]


def form(session: Session, job: Job, by: str) -> RerunForm:
    """The form for a re-run of ``job`` by user ``by`` (see :func:`rerun` for the rules)."""
    secrets = sorted(job.secret_env)
    choices = rerun_computes(session)
    experiments = server_internals.active_experiment_names(session)
    if job.experiment_id not in experiments:  # deleted since: still shown as the original
        experiments[job.experiment_id] = job.experiment_id
    return RerunForm(
        name=derived_name(session, job.id),
        computes=choices if job.compute in choices else [job.compute, *choices],
        experiments=experiments,
        secrets_kept=secrets if by == job.user else [],
        secrets_dropped=[] if by == job.user else secrets,
    )


@dataclass(frozen=True)
class ChainLink:
    """A job of a re-run chain: the original at depth 0, its re-runs below it."""

    id: str
    run_name: str | None
    status: str
    depth: int


def _parent(session: Session, job_id: str) -> str | None:
    return server_internals.runs_tagged(session, [job_id], RERUN_OF).get(job_id)


def _root(session: Session, job_id: str) -> str:
    seen = {job_id}
    while (parent := _parent(session, job_id)) is not None and parent not in seen:
        if len(seen) >= MAX_CHAIN:
            break
        seen.add(parent)
        job_id = parent
    return job_id


def _children(session: Session, root: str) -> dict[str, list[str]]:
    """Each job's re-runs, from ``root`` down, a level a query."""
    children: dict[str, list[str]] = {}
    frontier, seen = [root], {root}
    while frontier and len(seen) < MAX_CHAIN:
        found = server_internals.runs_with_tag(session, RERUN_OF, frontier)
        frontier = []
        for child, parent in sorted(found.items()):
            if child not in seen:
                seen.add(child)
                children.setdefault(parent, []).append(child)
                frontier.append(child)
    return children


def chain(session: Session, job_id: str) -> list[ChainLink]:
    """The re-run chain ``job_id`` is part of, from its original down, each job before its
    re-runs (in submission order); empty for a job never re-run and no re-run."""
    root = _root(session, job_id)
    children = _children(session, root)
    if not children:
        return []
    ordered: list[tuple[str, int]] = []
    ids = {root} | {c for kids in children.values() for c in kids}
    found = {j.id: j for j in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}

    def walk(node: str, depth: int) -> None:
        ordered.append((node, depth))
        kids = [k for k in children.get(node, []) if k in found]
        for kid in sorted(kids, key=lambda k: (found[k].submitted_at, k)):
            walk(kid, depth + 1)

    walk(root, 0)
    names = server_internals.run_names(session, [i for i, _ in ordered])
    return [
        ChainLink(i, names.get(i), str(found[i].status) if i in found else "deleted", depth)
        for i, depth in ordered
    ]


def derived_name(session: Session, job_id: str) -> str:
    """A re-run's default name: its original's, then "(rerun N)", N counting the re-runs in
    the chain so far."""
    root = _root(session, job_id)
    base = server_internals.run_name(session, root) or root
    base = _SUFFIX.sub("", base)
    count = sum(len(kids) for kids in _children(session, root).values())
    return f"{base} (rerun {count + 1})"


def with_parameters(
    spec: EntryPointSpec, stored: dict[str, str], changed: dict[str, str]
) -> tuple[dict[str, str], str | None]:
    """The parameters and command from the entry point stored at submit: only the changed
    parameters are checked (the others passed at submit), and MLflow's ``EntryPoint`` builds
    the command."""
    parameters = {name: p.to_json() for name, p in spec.parameters.items()}
    try:
        entry = mlflow_internals.entry_point(spec.name, parameters, spec.command)
    except (TypeError, ValueError, MlflowException) as e:
        raise InvalidRequestError(
            f"The job's stored entry point cannot be read ({e}); submit the project again."
        ) from e
    check_types(entry, changed)
    resolved = {**stored, **changed}
    return resolved, build_command(entry, resolved)


def _spec_from_snapshot(session: Session, old: Job, settings: ServerSettings) -> EntryPointSpec:
    """For a job submitted before entry points were stored with it: its entry point, read from
    the MLproject (or the file entry point) in its snapshot."""
    snapshot = snapshots.get_snapshot(session, old.snapshot_id)
    with tempfile.TemporaryDirectory(prefix="flowyard-rerun-") as tmp:
        for entry in snapshot.manifest:
            path: str = entry["path"]
            if path.lower() == "mlproject" or path == old.entry_point:
                blob = snapshots.open_blob(session, settings.artifacts_destination, entry["digest"])
                target = Path(tmp, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(blob.path.read_bytes())
                if blob.temp_dir:
                    shutil.rmtree(blob.temp_dir, ignore_errors=True)
        try:
            project = mlflow_internals.load_project(tmp)
            return entry_point_spec(project.get_entry_point(old.entry_point))
        except (MlflowException, OSError, ValueError) as e:
            raise InvalidRequestError(
                f"Job {old.id}'s snapshot has no entry point {old.entry_point!r} that MLflow "
                f"can read ({e}); submit the project again."
            ) from e
