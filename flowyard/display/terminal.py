"""An interactive terminal: live progress drawn with rich, and a closing summary box.

While a job waits in its queue or prepares, a live line at the bottom says why it waits (and
updates as the queue moves) or which phase its environment build is in; the runner's lines
print above it. Once the entry point runs, its output goes to the terminal untouched, so its
own progress bars and colours work as they would run by hand.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.progress_bar import ProgressBar
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from flowyard import defaults
from flowyard.client import Client
from flowyard.display import facts
from flowyard.display.lines import TRACEBACK_TAIL, SnapshotLine, announcement, queue_line
from flowyard.env import phases
from flowyard.schemas import JobOut, JobStatus
from flowyard.snapshot.manifest import size_text

if TYPE_CHECKING:
    from rich.live import Live

    from flowyard.snapshot import SnapshotResult

# While queued, how often the queue's line is brought up to date.
QUEUE_POLL_S = 1.0
# The runner's last line before the entry point's own output. The runner reports `running` as
# soon as the entry point starts, while its last preparation lines may still be on their way
# (the log ships every 0.2 s): they are drawn as preparation until this line, or until this
# long after the status moved on (a runner that does not say it).
RUNNER_RUNNING = "[flowyard] running: "
LOG_LAG_S = 2.0
METRICS_SHOWN = 12
_LIVE = (JobStatus.QUEUED, JobStatus.PREPARING)
_STYLES = {
    JobStatus.QUEUED: "magenta",
    JobStatus.PREPARING: "cyan",
    JobStatus.RUNNING: "blue",
    JobStatus.FINALIZING: "cyan",
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "yellow",
}


def status_style(status: JobStatus) -> str:
    return _STYLES[status]


def console_for(out: TextIO) -> Console:
    return Console(file=out, highlight=False, soft_wrap=True, emoji=False)


def _link(url: str) -> Text:
    return Text(url, style=f"link {url}")


def error_box(job: JobOut) -> Panel | None:
    """A failed or canceled job's error, as the studio's job page shows it."""
    err = job.error
    if err is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        return None
    title = "Canceled" if job.status == JobStatus.CANCELED else "Failed"
    if err.type:
        title += f": {err.type}"
    parts: list[RenderableType] = []
    if err.message:
        parts.append(Text(err.message, style="bold"))
    exits = [f"exit code {err.exit_code}"] if err.exit_code is not None else []
    exits += [f"signal {err.signal}"] if err.signal else []
    parts.append(Text(" · ".join([*exits, f"the whole log: flowyard job logs {job.run_id}"])))
    if err.traceback:
        tail = err.traceback.splitlines()[-TRACEBACK_TAIL:]
        parts.append(Text("\n".join(tail), style="dim"))
    return Panel(Group(*parts), title=title, title_align="left", border_style="red")


def summary(client: Client, job: JobOut, data: facts.RunData) -> RenderableType:
    """The closing box: status and time per phase, latest metrics, outputs, and links; a failed
    job's error box above it."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    if times := facts.phases_text(job):
        grid.add_row("time", times)
    if data.metrics:
        shown = list(data.metrics.items())[:METRICS_SHOWN]
        text = " · ".join(f"{k} {facts.number_text(v)}" for k, v in shown)
        if len(data.metrics) > len(shown):
            text += f" · {len(data.metrics) - len(shown)} more in the studio"
        grid.add_row("metrics", text)
    if data.outputs_total:
        named = [f"{o.path.removeprefix('outputs/')} ({size_text(o.size)})" for o in data.outputs]
        if more := data.outputs_total - len(data.outputs):
            named.append(f"{more} more")
        grid.add_row("outputs", f"{data.outputs_total} in outputs/: {', '.join(named)}")
    grid.add_row("studio", _link(facts.studio_url(client.url, job)))
    grid.add_row("mlflow", _link(facts.mlflow_url(client.url, job)))
    took = facts.total_time(job)
    title = f"Job {job.run_id} {job.status}"
    if took is not None:
        title += f" in {facts.duration_text(took)}"
    title += f" on {job.compute}"
    box = Panel(
        grid,
        title=title,
        title_align="left",
        border_style=status_style(job.status),
        expand=False,
    )
    error = error_box(job)
    return Group(error, box) if error else box


class _Waiting:
    """The live line of a job that is not running yet: its queue, or its preparation."""

    def __init__(self, job: JobOut) -> None:
        # The job as last fetched (its queue's reason), and its status as the log last said.
        self.job = job
        self.status = job.status
        self.phase: phases.Phase | None = None
        self.since = time.monotonic()
        self._spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> RenderableType:
        elapsed = facts.duration_text(time.monotonic() - self.since)
        grid = Table.grid(padding=(0, 1))
        if self.status == JobStatus.QUEUED:
            grid.add_row(self._spinner, Text(queue_line(self.job)), Text(elapsed, style="dim"))
            return grid
        phase = self.phase
        if phase is None:
            grid.add_row(self._spinner, Text("preparing"), Text(elapsed, style="dim"))
            return grid
        noun = "requirement" if phase.name == "resolving" else "package"
        what = f"environment: {phase.name} {phase.count} {noun}{'' if phase.count == 1 else 's'}"
        cells: list[RenderableType] = [self._spinner, Text(what)]
        if phase.total:
            cells.append(ProgressBar(total=phase.total, completed=phase.done, width=24))
            cells.append(Text(f"{phase.done}/{phase.total} downloads ({phase.item})"))
        cells.append(Text(elapsed, style="dim"))
        grid.add_row(*cells)
        return grid


class TerminalFollower:
    """Follows a job on a terminal: a live line while it waits or prepares, its output as it
    comes, then the closing box."""

    def __init__(self, client: Client, out: TextIO) -> None:
        self._client = client
        self._out = out
        self._console = console_for(out)
        self._live: Live | None = None
        self._waiting: _Waiting | None = None
        self._partial = b""
        self._moved_on: float | None = None

    def start(self, job: JobOut) -> None:
        self._console.print(announcement(self._client, job), markup=False)
        if job.status in _LIVE:
            from rich.live import Live

            self._waiting = _Waiting(job)
            self._live = Live(
                self._waiting,
                console=self._console,
                refresh_per_second=8,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()

    def wait_s(self, status: JobStatus) -> float:
        return QUEUE_POLL_S if status == JobStatus.QUEUED else defaults.LOG_WAIT_S

    def wants_job(self, status: JobStatus, changed: bool) -> bool:
        return status == JobStatus.QUEUED or changed

    def job(self, job: JobOut) -> None:
        waiting = self._waiting
        if waiting is None:
            if job.status == JobStatus.QUEUED:  # back in the queue after its runner was lost
                self._console.print(queue_line(job), markup=False)
            return
        self._moved(waiting, job.status)
        waiting.job = job
        self._refresh()

    def _moved(self, waiting: _Waiting, status: JobStatus) -> None:
        """Out of the queue: one line says how long the job waited, before anything it logs."""
        if waiting.status == JobStatus.QUEUED and status != JobStatus.QUEUED:
            took = facts.duration_text(time.monotonic() - waiting.since)
            self._console.print(Text(f"{queue_line(waiting.job)} for {took}", style="dim"))
            waiting.since = time.monotonic()
        waiting.status = status

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def log(self, data: bytes, status: JobStatus) -> None:
        waiting = self._waiting
        if waiting is None:
            self._write(data)
            return
        self._moved(waiting, status)
        if status not in _LIVE and self._moved_on is None:
            self._moved_on = time.monotonic()
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for at, raw in enumerate(lines):
            # A carriage return rewrites its line, as the terminal would have drawn it.
            line = raw.decode(errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
            phase = phases.parse(line, waiting.phase)
            if phase is not None:
                waiting.phase = phase
                self._refresh()  # each phase drawn at least once, however short
                continue
            self._console.print(Text.from_ansi(line))
            if line.startswith(RUNNER_RUNNING):
                self._go_raw(b"\n".join([*lines[at + 1 :], self._partial]))
                return
            if line.startswith(phases.PREFIX):
                waiting.phase = None  # built or reused: the build is over
        if self._moved_on is not None and time.monotonic() - self._moved_on > LOG_LAG_S:
            self._go_raw(self._partial)

    def _go_raw(self, rest: bytes) -> None:
        """The entry point's output from here on: untouched, straight to the terminal."""
        self._stop_live()
        self._partial = b""
        self._write(rest)

    def _write(self, data: bytes) -> None:
        if data:
            self._out.write(data.decode(errors="replace"))
            self._out.flush()

    def _stop_live(self) -> None:
        if self._live is not None:
            self._live.stop()
        self._live = None
        self._waiting = None

    def end(self, job: JobOut) -> None:
        self._stop_live()
        self._write(self._partial)
        self._partial = b""
        data = facts.run_data(self._client, job.run_id)
        self._console.print()
        self._console.print(summary(self._client, job, data))

    def close(self) -> None:
        self._stop_live()


class TerminalSnapshotProgress(SnapshotLine):
    """Bars for hashing and uploading (files, bytes, rate, time left, and what was skipped),
    replaced by the snapshot's line when it is done."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._console = console_for(out)
        self._progress = Progress(
            TextColumn("{task.description:<9}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[files]}"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("[dim]{task.fields[skipped]}"),
            console=self._console,
            transient=True,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None
        self._files_total = 0
        self._files_done = 0

    def __enter__(self) -> TerminalSnapshotProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _begin(self, name: str, files: int, size: int, skipped: str) -> None:
        with self._lock:
            self._files_total, self._files_done = files, 0
            self._task = self._progress.add_task(
                name, total=size, files=f"0/{files:,} files", skipped=skipped
            )
        self._progress.refresh()

    def hashing(self, files: int, size: int, unchanged_files: int, unchanged_size: int) -> None:
        super().hashing(files, size, unchanged_files, unchanged_size)
        skipped = (
            f"{unchanged_files:,} unchanged ({size_text(unchanged_size)})"
            if unchanged_files
            else ""
        )
        self._begin("hashing", files, size, skipped)

    def uploading(self, files: int, size: int, present_files: int, present_size: int) -> None:
        super().uploading(files, size, present_files, present_size)
        skipped = (
            f"{present_files:,} already in the workspace ({size_text(present_size)})"
            if present_files
            else ""
        )
        self._begin("uploading", files, size, skipped)

    def advance(self, size: int, files: int = 0) -> None:
        with self._lock:
            if self._task is None:
                return
            self._files_done += files
            done = f"{self._files_done:,}/{self._files_total:,} files"
            self._progress.update(self._task, advance=size, files=done)

    def done(self, result: SnapshotResult) -> None:
        self._progress.refresh()
        self._progress.stop()
        super().done(result)

    def _show(self, text: str) -> None:
        self._console.print(Text(text))
