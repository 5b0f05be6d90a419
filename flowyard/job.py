"""`Job`: a job in a workspace, as the SDK hands it out (``Workspace.get_job``) and as
``mlflow.projects.run`` returns it (``FlowyardSubmittedRun`` is one).

The workspace finishes a job's status whether or not anyone waits; ``wait()`` follows it, showing
its progress where the caller's output goes (see ``flowyard.display``), and a notebook shows a
job as a run table.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import TextIO

from flowyard import display
from flowyard.client import Client
from flowyard.display import facts
from flowyard.errors import FlowyardError
from flowyard.schemas import JobOut, JobStatus

POLL_S = 0.1


class Job:
    """A job in a Flowyard workspace.

    Args:
        client: A client for the job's workspace.
        job: The job as last fetched.
        stream_output: Whether ``wait()`` shows the job's log (``STREAM_OUTPUT``).
        out: Where ``wait()`` shows it; default: standard output.
    """

    def __init__(
        self,
        client: Client,
        job: JobOut,
        *,
        stream_output: bool = True,
        out: TextIO | None = None,
    ) -> None:
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

    @property
    def status(self) -> JobStatus:
        """The job's status, fetched now."""
        return self.refresh().status

    def refresh(self) -> JobOut:
        """Fetch the job again."""
        self._job = self._client.get_job(self.run_id)
        return self._job

    def __repr__(self) -> str:
        job = self._job
        return (
            f"{type(self).__name__}(run_id={job.run_id!r}, status={job.status.value!r}, "
            f"compute={job.compute!r})"
        )

    def _repr_html_(self) -> str:
        """The run table Jupyter shows for a cell that ends with a job, as of now."""
        from flowyard.display.notebook import job_html

        with contextlib.suppress(FlowyardError):  # the workspace away: the job as last seen
            self.refresh()
        data = facts.run_data(self._client, self.run_id)
        return job_html(self._client.url, self._job, data)

    def announcement(self, *, follow: bool = False) -> str:
        """The job, its compute and where to see it (and, for a caller that will not wait, how
        to follow it)."""
        from flowyard.display.lines import announcement

        return announcement(self._client, self._job, follow=follow)

    def wait(self) -> bool:
        """Wait for the job to end; True when it completed. Ctrl-C cancels the job.

        With ``stream_output`` False the log is not shown, but the job's line, its queue, and
        its end (with the error of a failed job) still are.
        """
        view = display.follower(self._client, self._out, stream=self._stream)
        try:
            if self._job.status == JobStatus.QUEUED:
                self.refresh()  # why it waits, as of now (not as of its submission)
            view.start(self._job)
            self._follow(view)
            self._job = self._client.get_job(self.run_id)
            view.end(self._job)
            if self._job.kind == "sweep":
                from flowyard.sweep import summary

                print(summary(self._client.get_sweep(self.run_id)), file=self._out, flush=True)
        except KeyboardInterrupt:
            view.close()
            print(f"\nCanceling job {self.run_id} ...", file=self._out, flush=True)
            self.cancel()
            raise
        finally:
            view.close()
        return self._job.status == JobStatus.COMPLETED

    def _follow(self, view: display.Follower) -> None:
        offset = 0
        status = self._job.status
        while True:
            asked = time.monotonic()
            data, now, size = self._client.read_log(self.run_id, offset, wait=view.wait_s(status))
            view.log(data, now)
            offset += len(data)
            if now.is_final and offset >= size:
                return
            if view.wants_job(now, now != status):
                self._job = self._client.get_job(self.run_id)
                view.job(self._job)
            if not data and now == status:
                # The workspace waits for news before it answers; one that answered at once
                # with none (an older one) is polled instead.
                time.sleep(max(0.0, POLL_S - (time.monotonic() - asked)))
            status = now

    def cancel(self, timeout: float = 60) -> None:
        """Stop the job (its whole process group) and wait until the workspace says so."""
        self._job = self._client.cancel_job(self.run_id)
        deadline = time.monotonic() + timeout
        while not self._job.status.is_final and time.monotonic() < deadline:
            time.sleep(POLL_S)
            self._job = self._client.get_job(self.run_id)
