"""`FlowyardSubmittedRun`: what `mlflow.projects.run(..., backend="flowyard")` returns."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from mlflow.projects.submitted_run import SubmittedRun

from flowyard import defaults
from flowyard.client import Client
from flowyard.errors import FlowyardError
from flowyard.mlflow_errors import as_execution_exception
from flowyard.schemas import JobOut, JobStatus
from flowyard.snapshot import SnapshotResult

POLL_S = 0.1
TRACEBACK_TAIL = 12


def run_url(workspace_url: str, job: JobOut) -> str:
    return f"{workspace_url}/#/experiments/{job.experiment_id}/runs/{job.run_id}"


class FlowyardSubmittedRun(SubmittedRun):  # type: ignore[misc]
    """A job in a Flowyard workspace. The workspace finishes its status whether or not anyone
    waits; ``wait()`` follows it (and streams its log when asked)."""

    def __init__(
        self,
        client: Client,
        job: JobOut,
        *,
        stream_output: bool = True,
        out: TextIO | None = None,
        snapshot: SnapshotResult | None = None,
    ) -> None:
        # What submitting uploaded of the code (None for a job looked up later).
        self.snapshot = snapshot
        self._client = client
        self._job = job
        self._stream = stream_output
        self._out = out or sys.stdout

    @property
    def run_id(self) -> str:
        return self._job.run_id

    @property
    def job(self) -> JobOut:
        """The job as last fetched from the workspace."""
        return self._job

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def announcement(self, *, follow: bool = False) -> str:
        """The job, its compute and where to see it (and, for a caller that will not wait, how
        to follow it)."""
        line = f"Job {self.run_id} on {self._job.compute}: {run_url(self._client.url, self._job)}"
        if follow:
            line += f"\nFollow it with `flowyard job logs {self.run_id} -f`."
        return line

    def wait(self) -> bool:
        """Wait for the job to end; True when it completed. Ctrl-C cancels the job.

        With ``STREAM_OUTPUT: False`` the log is not shown, but the job's line and its end
        (with the error of a failed job) still are.
        """
        try:
            self._print(self.announcement())
            self._follow()
            self._job = self._client.get_job(self.run_id)
        except KeyboardInterrupt:
            self._print(f"\nCanceling job {self.run_id} ...")
            self.cancel()
            raise
        except FlowyardError as e:
            raise as_execution_exception(e) from e.__cause__
        self._summary()
        return self._job.status == JobStatus.COMPLETED

    def _follow(self) -> None:
        offset = 0
        status = self._job.status
        while True:
            asked = time.monotonic()
            data, now, size = self._client.read_log(self.run_id, offset, wait=defaults.LOG_WAIT_S)
            if data and self._stream:
                self._out.write(data.decode(errors="replace"))
                self._out.flush()
            offset += len(data)
            if now.is_final and offset >= size:
                return
            if not data and now == status:
                # The workspace waits for news before it answers; one that answered at once
                # with none (an older one) is polled instead.
                time.sleep(max(0.0, POLL_S - (time.monotonic() - asked)))
            status = now

    def _summary(self) -> None:
        job = self._job
        took = ""
        if job.started_at and job.ended_at:
            took = f" in {(job.ended_at - job.started_at).total_seconds():.1f} s"
        self._print(f"\nJob {job.run_id} {job.status}{took} on {job.compute}.")
        if job.error and job.status == JobStatus.FAILED:
            err = job.error
            if err.type:
                self._print(f"{err.type}: {err.message}")
            if err.traceback:
                tail = err.traceback.splitlines()[-TRACEBACK_TAIL:]
                self._print("\n".join(tail))
            if err.signal:
                self._print(f"Stopped by {err.signal}.")
            elif not err.type and err.exit_code is not None:
                self._print(f"Exit code {err.exit_code}.")
            self._print(
                f"The whole log: `flowyard job logs {job.run_id}`, or the run's artifact "
                f"logs/std_log.txt at {run_url(self._client.url, job)}"
            )

    def get_status(self) -> str:
        """The MLflow run status: SCHEDULED, RUNNING, FINISHED, FAILED or KILLED."""
        self._job = self._client.get_job(self.run_id)
        return self._job.status.mlflow_status

    def cancel(self, timeout: float = 60) -> None:
        """Stop the job (its whole process group) and wait until the workspace says so."""
        self._job = self._client.cancel_job(self.run_id)
        deadline = time.monotonic() + timeout
        while not self._job.status.is_final and time.monotonic() < deadline:
            time.sleep(POLL_S)
            self._job = self._client.get_job(self.run_id)
