"""The MLflow side of a job: its run, through the very store MLflow's server app uses."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import LifecycleStage, Metric, Param, RunStatus, RunTag, ViewType
from mlflow.exceptions import MlflowException

from flowyard.errors import NotFoundError
from flowyard.schemas import JobStatus
from flowyard.server import mlflow_internals

logger = logging.getLogger(__name__)

STORE_SCHEME = "mlflow-artifacts"
# The run's description, markdown, which MLflow's UI shows (and edits) on the run's page.
NOTE_TAG = "mlflow.note.content"
# Runs read per search while an experiment is deleted.
_RUN_PAGE = 1000


def tracking_store() -> Any:
    # The server app's own store (same engine, same artifact root `mlflow-artifacts:/`), so a run
    # made here is exactly what MLflow's REST API would have made.
    return mlflow_internals.tracking_store()


def create_run(
    experiment_id: str,
    user: str,
    run_name: str | None,
    tags: dict[str, str],
    params: dict[str, str],
    start_ms: int | None = None,
    note: Callable[[str], str] | None = None,
) -> str:
    """Create the run a job will report into, started at ``start_ms`` (default: now); returns
    its id.

    ``note(run_id)``, when given, is markdown added to the run's description (the
    ``mlflow.note.content`` tag MLflow's UI shows on the run's page): after the submitter's own
    description when the tags carry one, never in its place."""
    store = tracking_store()
    try:
        experiment = store.get_experiment(experiment_id)
    except MlflowException as e:
        raise NotFoundError(
            f"Experiment {experiment_id} does not exist in this workspace; create it with "
            "mlflow.set_experiment(name) first."
        ) from e
    if experiment.lifecycle_stage != "active":
        raise NotFoundError(
            f"Experiment {experiment_id} is deleted; restore it or choose another experiment."
        )
    run = store.create_run(
        experiment_id=experiment_id,
        user_id=user,
        start_time=int(time.time() * 1000) if start_ms is None else start_ms,
        tags=[RunTag(k, v) for k, v in tags.items()],
        run_name=run_name,
    )
    run_id: str = run.info.run_id
    try:
        extra = []
        if note is not None:
            own = tags.get(NOTE_TAG, "").rstrip()
            extra.append(RunTag(NOTE_TAG, f"{own}\n\n{note(run_id)}" if own else note(run_id)))
        if params or extra:
            store.log_batch(
                run_id, metrics=[], params=[Param(k, v) for k, v in params.items()], tags=extra
            )
        store.update_run_info(run_id, RunStatus.SCHEDULED, end_time=None, run_name=None)
    except Exception:
        store.delete_run(run_id)
        raise
    return run_id


def artifact_uri(run_id: str) -> str:
    uri: str = tracking_store().get_run(run_id).info.artifact_uri
    return uri


def set_run_status(run_id: str, status: JobStatus) -> None:
    """Mirror a job's status onto its run; a final status also ends the run."""
    end_time = int(time.time() * 1000) if status.is_final else None
    tracking_store().update_run_info(
        run_id, RunStatus.from_string(status.mlflow_status), end_time=end_time, run_name=None
    )


def delete_run(run_id: str) -> None:
    tracking_store().delete_run(run_id)


def settle_orphan(run_id: str, reason: str) -> None:
    """End a run no job will ever report into (its submission did not complete), and delete it
    as MLflow deletes runs (restorable, gone from every search and UI that does not ask for
    deleted runs), with ``reason`` in its `flowyard.orphan` tag."""
    store = tracking_store()
    store.set_tag(run_id, RunTag("flowyard.orphan", reason))
    store.update_run_info(run_id, RunStatus.FAILED, end_time=int(time.time() * 1000), run_name=None)
    store.delete_run(run_id)


def artifact_repository(artifact_uri: str, artifacts_destination: str) -> Any:
    """MLflow's artifact repository for a run's (or experiment's) artifact URI, reached straight
    in the artifact store: ``mlflow-artifacts:/<path>`` is served from ``<destination>/<path>``
    by MLflow's proxy, which the server need not call over HTTP."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if artifact_uri.startswith("mlflow-artifacts:"):
        path = artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/")
        artifact_uri = f"{artifacts_destination.rstrip('/')}/{path}"
    return get_artifact_repository(artifact_uri)


def stored_bytes(repository: Any) -> tuple[int, int]:
    """The files and bytes under an artifact repository's root: walked on a local folder, listed
    through MLflow elsewhere."""
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    files = size = 0
    if isinstance(repository, LocalArtifactRepository):
        for folder, _dirs, names in os.walk(repository.artifact_dir):
            for name in names:
                with contextlib.suppress(OSError):
                    size += os.lstat(os.path.join(folder, name)).st_size
                    files += 1
        return files, size
    todo: list[str | None] = [None]
    while todo:
        for info in repository.list_artifacts(todo.pop()):
            if info.is_dir:
                todo.append(info.path)
            else:
                files += 1
                size += info.file_size or 0
    return files, size


def _delete_artifacts(repository: Any) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    repository.delete_artifacts()
    if isinstance(repository, LocalArtifactRepository):
        # MLflow removes the run's `artifacts/` folder; the run's own folder above it is left
        # empty.
        with contextlib.suppress(OSError):
            Path(repository.artifact_dir).parent.rmdir()


@dataclass(frozen=True)
class Freed:
    """What a deletion freed in the artifact store."""

    runs: int = 0
    files: int = 0
    bytes: int = 0

    def __add__(self, other: Freed) -> Freed:
        return Freed(self.runs + other.runs, self.files + other.files, self.bytes + other.bytes)


def purge_run(run_id: str, artifacts_destination: str) -> Freed:
    """Delete a run for good, as `mlflow gc` does: MLflow's soft delete first (so a failure
    halfway leaves a deleted run, which this finishes when called again), then its artifacts
    through MLflow's artifact repository, then its rows. A run that is gone already frees
    nothing."""
    store = tracking_store()
    try:
        run = store.get_run(run_id)
    except MlflowException as e:
        if e.error_code == "RESOURCE_DOES_NOT_EXIST":
            return Freed()
        raise
    if run.info.lifecycle_stage == LifecycleStage.ACTIVE:
        store.delete_run(run_id)
    files = size = 0
    uri = run.info.artifact_uri or ""
    # Only the run's own folder in the workspace's store: an experiment whose artifact_location
    # was set outside it (before the workspace refused such) keeps its files where they are.
    if _in_store(uri) and uri.rstrip("/").endswith(f"/{run_id}/artifacts"):
        repository = artifact_repository(uri, artifacts_destination)
        files, size = stored_bytes(repository)
        _delete_artifacts(repository)
    else:
        logger.warning(
            "run %s: artifacts at %s are outside the workspace's store; left", run_id, uri
        )
    mlflow_internals.hard_delete_run(store, run_id)
    return Freed(1, files, size)


def _in_store(uri: str) -> bool:
    return uri.startswith(f"{STORE_SCHEME}:/") and ".." not in uri.split("/")


def experiment_run_ids(experiment_id: str) -> Iterator[str]:
    """Every run of the experiment, deleted ones too, a page at a time."""
    store = tracking_store()
    token = None
    while True:
        page = store.search_runs(
            [experiment_id], "", ViewType.ALL, max_results=_RUN_PAGE, page_token=token
        )
        yield from (run.info.run_id for run in page)
        token = page.token
        if not token:
            return


def get_experiment(experiment_id: str) -> Any:
    """The experiment, deleted or not.

    Raises:
        NotFoundError: there is none of that id.
    """
    try:
        return tracking_store().get_experiment(experiment_id)
    except MlflowException as e:
        raise NotFoundError(
            f"Experiment {experiment_id} does not exist in this workspace; check the id "
            "(`mlflow experiments search` lists them)."
        ) from e


def purge_experiment(experiment_id: str, artifacts_destination: str) -> Freed:
    """Delete an experiment whose runs are gone (see :func:`purge_run`) for good: MLflow's soft
    delete, its artifact root (logged models live there), then its rows."""
    store = tracking_store()
    experiment = get_experiment(experiment_id)
    if experiment.lifecycle_stage == LifecycleStage.ACTIVE:
        store.delete_experiment(experiment_id)
    freed = Freed()
    # Only the folder MLflow gives the experiment: any experiment may name another location in
    # the store (the store's root, another experiment's folder), which is not its own to delete.
    if (experiment.artifact_location or "").rstrip("/") == f"{STORE_SCHEME}:/{experiment_id}":
        repository = artifact_repository(experiment.artifact_location, artifacts_destination)
        files, size = stored_bytes(repository)
        repository.delete_artifacts()
        freed = Freed(0, files, size)
    mlflow_internals.hard_delete_experiment(store, experiment_id)
    return freed


def upload_log(
    run_id: str,
    pages: Iterable[bytes],
    artifacts_destination: str,
    run_artifact_uri: str | None = None,
) -> None:
    """Store the log given as ``pages`` as the run's `logs/std_log.txt`, straight into the
    artifact store (``run_artifact_uri``, when the caller knows it, saves reading the run).
    An empty log stores nothing. The pages go through a temporary file, so a long log is
    never held whole."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "std_log.txt"
        with local.open("wb") as out:
            for page in pages:
                out.write(page)
        if not local.stat().st_size:
            return
        uri = run_artifact_uri or artifact_uri(run_id)
        artifact_repository(uri, artifacts_destination).log_artifact(str(local), "logs")


def log(
    run_id: str,
    *,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    tags: dict[str, str] | None = None,
    step: int = 0,
) -> None:
    """Log onto a run the workspace writes itself (a sweep's)."""
    now = int(time.time() * 1000)
    tracking_store().log_batch(
        run_id,
        metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
        params=[Param(k, v) for k, v in (params or {}).items()],
        tags=[RunTag(k, v) for k, v in (tags or {}).items()],
    )


def metric_history(run_id: str, key: str) -> dict[int, float]:
    """A run's values of metric ``key`` by step (the last one logged at each step)."""
    history = tracking_store().get_metric_history(run_id, key)
    values: dict[int, float] = {}
    for metric in sorted(history, key=lambda m: (m.step, m.timestamp)):
        values[int(metric.step)] = float(metric.value)
    return values
