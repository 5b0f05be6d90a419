"""The MLflow side of a job: its run, through the very store MLflow's server app uses."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException

from flowyard.errors import NotFoundError
from flowyard.schemas import JobStatus
from flowyard.server import mlflow_internals


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
) -> str:
    """Create the run a job will report into; returns its id."""
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
        start_time=int(time.time() * 1000),
        tags=[RunTag(k, v) for k, v in tags.items()],
        run_name=run_name,
    )
    run_id: str = run.info.run_id
    try:
        if params:
            store.log_batch(
                run_id, metrics=[], params=[Param(k, v) for k, v in params.items()], tags=[]
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
    from pathlib import Path

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "std_log.txt"
        with local.open("wb") as out:
            for page in pages:
                out.write(page)
        if not local.stat().st_size:
            return
        # `mlflow-artifacts:/<path>` is served from `<destination>/<path>` by MLflow's proxy.
        uri = run_artifact_uri or artifact_uri(run_id)
        path = uri.removeprefix("mlflow-artifacts:").lstrip("/")
        repo = get_artifact_repository(f"{artifacts_destination.rstrip('/')}/{path}")
        repo.log_artifact(str(local), "logs")


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
