"""Plain lines: for output that is not a terminal (a file, CI, a pipe) or ``STREAM_OUTPUT: False``.

At most one line per phase, nothing that moves the cursor, and no call to the workspace beyond
what following the job needs: a submit whose output goes to a file takes no longer for this.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Self, TextIO

from flowyard import defaults
from flowyard.client import Client
from flowyard.display import facts
from flowyard.env import phases
from flowyard.schemas import JobOut, JobStatus
from flowyard.snapshot.manifest import size_text

if TYPE_CHECKING:
    from flowyard.snapshot import SnapshotResult

TRACEBACK_TAIL = 12
# An upload this long or longer is said with its rate (a shorter one's rate is noise).
RATE_AFTER_S = 0.1


def _files(count: int) -> str:
    return f"{count:,} file{'' if count == 1 else 's'}"


def announcement(client: Client, job: JobOut, *, follow: bool = False) -> str:
    """The job, its compute and where to see it (and, for a caller that will not wait, how
    to follow it)."""
    line = f"Job {job.run_id} on {job.compute}: {facts.mlflow_url(client.url, job)}"
    if follow:
        line += (
            f"\nFollow it with `flowyard job logs {job.run_id} -f`, or watch it with "
            f"`flowyard job watch {job.run_id}`."
        )
    return line


def queue_line(job: JobOut) -> str:
    """``queued on cpu-cluster: 2 of 2 slots busy, 3 ahead``"""
    return f"queued on {job.waiting_reason or job.compute}"


def summary_line(client: Client, job: JobOut) -> str:
    """``Job … completed in 2.4 s on local (queued 0.1 s · …): <studio link>``"""
    took = facts.total_time(job)
    took_text = f" in {facts.duration_text(took)}" if took is not None else ""
    times = facts.phases_text(job)
    times_text = f" ({times})" if times else ""
    return (
        f"Job {job.run_id} {job.status}{took_text} on {job.compute}{times_text}: "
        f"{facts.studio_url(client.url, job)}"
    )


def error_lines(client: Client, job: JobOut) -> list[str]:
    """A failed job's error as text: type and message, the end of its traceback, its exit, and
    where its whole log is."""
    err = job.error
    if err is None or job.status != JobStatus.FAILED:
        return []
    lines = []
    if err.type:
        lines.append(f"{err.type}: {err.message}")
    if err.traceback:
        lines += err.traceback.splitlines()[-TRACEBACK_TAIL:]
    if err.signal:
        lines.append(f"Stopped by {err.signal}.")
    elif not err.type and err.exit_code is not None:
        lines.append(f"Exit code {err.exit_code}.")
    lines.append(
        f"The whole log: `flowyard job logs {job.run_id}`, or the run's artifact "
        f"logs/std_log.txt at {facts.mlflow_url(client.url, job)}"
    )
    return lines


class LinesFollower:
    """The job's line, its queue line, its log as it comes (or, without the log, one line per
    environment phase), and a closing line with the error of a failed job."""

    def __init__(self, client: Client, out: TextIO, *, stream: bool) -> None:
        self._client = client
        self._out = out
        self._stream = stream
        self._partial = b""
        self._phase: phases.Phase | None = None

    def _print(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def start(self, job: JobOut) -> None:
        self._print(announcement(self._client, job))
        self.job(job)

    def wait_s(self, status: JobStatus) -> float:
        return defaults.LOG_WAIT_S

    def wants_job(self, status: JobStatus, changed: bool) -> bool:
        return changed and status == JobStatus.QUEUED  # back in the queue: say why

    def job(self, job: JobOut) -> None:
        if job.status == JobStatus.QUEUED:
            self._print(queue_line(job))

    def log(self, data: bytes, status: JobStatus) -> None:
        if self._stream:
            if data:
                self._out.write(data.decode(errors="replace"))
                self._out.flush()
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for raw in lines:
            line = raw.decode(errors="replace")
            phase = phases.parse(line, self._phase)
            if phase and phase.name != (self._phase.name if self._phase else None):
                self._print(line.removeprefix("[flowyard] "))
            self._phase = phase or self._phase

    def end(self, job: JobOut) -> None:
        self._print("\n" + summary_line(self._client, job))
        for line in error_lines(self._client, job):
            self._print(line)

    def close(self) -> None:
        pass


class SnapshotLine:
    """Counts what a snapshot hashed and sent, and says it in one line when it is done; used as
    a context manager around the snapshot, so a view that draws can always stop drawing."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()
        self.hashed_files = self.hashed_size = 0
        self.unchanged_files = 0
        self.sent_files = self.sent_size = 0
        self.present_files = self.present_size = 0
        self._upload_started: float | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def hashing(self, files: int, size: int, unchanged_files: int, unchanged_size: int) -> None:
        self.hashed_files, self.hashed_size = files, size
        self.unchanged_files = unchanged_files

    def uploading(self, files: int, size: int, present_files: int, present_size: int) -> None:
        self.sent_files, self.sent_size = files, size
        self.present_files, self.present_size = present_files, present_size
        self._upload_started = time.monotonic()

    def advance(self, size: int, files: int = 0) -> None:
        pass  # only the totals are said

    def done(self, result: SnapshotResult) -> None:
        self._show(self.text(result))

    def _show(self, text: str) -> None:
        print(text, file=self._out, flush=True)

    def text(self, result: SnapshotResult) -> str:
        """``Snapshot 1a2b3c4d5e6f: 200 files, 10.0 MB; sent 3 files, 1.2 MB in 0.1 s (48 MB/s);
        197 files, 8.8 MB already in the workspace``"""
        started = self._upload_started
        upload_s = time.monotonic() - started if started is not None else 0.0
        parts = [f"Snapshot {result.id[:12]}: {_files(result.file_count)}, "]
        parts[0] += size_text(result.total_bytes)
        if result.uploaded_blobs:
            sent = f"sent {_files(result.uploaded_blobs)}, {size_text(result.uploaded_bytes)}"
            if upload_s >= RATE_AFTER_S:
                rate = result.uploaded_bytes / upload_s / 1e6
                sent += f" in {facts.duration_text(upload_s)} ({rate:,.1f} MB/s)"
            parts.append(sent)
        if self.present_files or not result.uploaded_blobs:
            what = "all" if not result.uploaded_blobs else _files(self.present_files)
            if result.uploaded_blobs:
                what += f", {size_text(self.present_size)}"
            parts.append(f"{what} already in the workspace")
        if self.unchanged_files and self.hashed_files:
            parts.append(f"{_files(self.hashed_files)} hashed")
        return "; ".join(parts)
