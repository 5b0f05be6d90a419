"""A job's status, apart from the API's models: the runner needs it without importing pydantic."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's lifecycle: queued → preparing → running → finalizing → completed|failed|canceled."""

    QUEUED = "queued"
    PREPARING = "preparing"
    RUNNING = "running"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_final(self) -> bool:
        return self in _FINAL

    @property
    def mlflow_status(self) -> str:
        """The MLflow run status that mirrors this job status."""
        return _MLFLOW_STATUS[self]


_FINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
_MLFLOW_STATUS = {
    JobStatus.QUEUED: "SCHEDULED",
    JobStatus.PREPARING: "SCHEDULED",
    JobStatus.RUNNING: "RUNNING",
    JobStatus.FINALIZING: "RUNNING",
    JobStatus.COMPLETED: "FINISHED",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELED: "KILLED",
}
