"""`FlowyardSubmittedRun`: what `mlflow.projects.run(..., backend="flowyard")` returns."""

from __future__ import annotations

from typing import TextIO

from mlflow.projects.submitted_run import SubmittedRun

from flowyard.client import Client
from flowyard.errors import FlowyardError
from flowyard.job import Job
from flowyard.mlflow_errors import as_execution_exception
from flowyard.schemas import JobOut
from flowyard.snapshot import SnapshotResult


class FlowyardSubmittedRun(Job, SubmittedRun):  # type: ignore[misc]
    """A job in a Flowyard workspace, as MLflow's ``SubmittedRun``: ``wait()`` raises MLflow's
    ``ExecutionException`` where a :class:`~flowyard.Job` raises Flowyard's errors, and
    ``get_status()`` answers in MLflow's run statuses."""

    def __init__(
        self,
        client: Client,
        job: JobOut,
        *,
        stream_output: bool = True,
        out: TextIO | None = None,
        snapshot: SnapshotResult | None = None,
    ) -> None:
        super().__init__(client, job, stream_output=stream_output, out=out)
        # What submitting uploaded of the code (None for a job looked up later).
        self.snapshot = snapshot

    def wait(self) -> bool:
        """Wait for the job to end; True when it completed. Ctrl-C cancels the job.

        With ``STREAM_OUTPUT: False`` the log is not shown, but the job's line and its end
        (with the error of a failed job) still are.
        """
        try:
            return super().wait()
        except FlowyardError as e:
            raise as_execution_exception(e) from e.__cause__

    def get_status(self) -> str:
        """The MLflow run status: SCHEDULED, RUNNING, FINISHED, FAILED or KILLED."""
        return self.refresh().status.mlflow_status
