"""Re-runs: a new job from an old one's stored snapshot, entry point, environment and options,
with some parameters changed, checked by MLflow's rules like a submit's."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

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
) -> tuple[Job, list[str]]:
    """A new job from ``job_id``'s snapshot, entry point, environment and compute, with its
    parameters replaced by ``parameters`` where given.

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
    request = JobSubmit(
        experiment_id=old.experiment_id,
        snapshot_id=old.snapshot_id,
        project_uri=old.project_uri,
        entry_point=old.entry_point,
        parameters=resolved,
        environment=old.environment,
        options=replace(old.options, command=command, entry_point_spec=spec),
        compute=old.compute,
        priority=old.priority,
        max_retries=old.max_retries,
        user=by,
        tags={**inherited, "flowyard.rerun_of": job_id},
        secret_env=secret_env or {},
    )
    job, _ = jobs.submit(session, request, submitted_from, keys, sealed_env=kept)
    return job, dropped


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
