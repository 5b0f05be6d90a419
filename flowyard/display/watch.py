"""`flowyard job watch ID`: a live view of one job, wherever it was submitted from.

On a terminal: the job's status and links, its timeline, its metrics as sparklines, and the
tail of its log, redrawn as the job goes on, then the closing summary. Anywhere else (a file, a
pipe): a line per status change and the closing line. Watching never changes the job: Ctrl-C
stops the watching, not the job.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC
from typing import TYPE_CHECKING, TextIO

from flowyard.client import Client
from flowyard.display import Mode, facts, mode_for
from flowyard.display.lines import announcement, error_lines, queue_line, summary_line
from flowyard.schemas import JobOut, JobStatus

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

_BARS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 30
METRICS_WATCHED = 12
# How often metrics and the job are fetched again; the log is read as it comes.
REFRESH_S = 2.0
READ_WAIT_S = 1.0
TAIL_LINES = 200


def sparkline(values: list[float], width: int = SPARK_WIDTH) -> str:
    """The last ``width`` values as bars, lowest ▁ to highest █."""
    values = values[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    if high == low:
        return _BARS[len(_BARS) // 2] * len(values)
    scale = (len(_BARS) - 1) / (high - low)
    return "".join(_BARS[round((v - low) * scale)] for v in values)


class LogTail:
    """The last lines of a log as a terminal would show them: a carriage return rewrites its
    line."""

    def __init__(self, keep: int = TAIL_LINES) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self._partial = ""

    def feed(self, data: bytes) -> None:
        text = self._partial + data.decode(errors="replace")
        *done, self._partial = text.split("\n")
        self.lines.extend(line.rstrip("\r").rsplit("\r", 1)[-1] for line in done)

    def last(self, count: int) -> list[str]:
        shown = [*self.lines, self._partial.rsplit("\r", 1)[-1]] if self._partial else self.lines
        return list(shown)[-count:] if count > 0 else []


def watch(client: Client, job_id: str, out: TextIO) -> int:
    """Follow the job until it ends; 0 if it completed, 1 if not, 130 when stopped by Ctrl-C."""
    job = client.get_job(job_id)
    if mode_for(out) == Mode.TERMINAL:
        return _watch_live(client, job, out)
    return _watch_lines(client, job, out)


def _watch_lines(client: Client, job: JobOut, out: TextIO) -> int:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    say(announcement(client, job))
    seen = 0
    offset = 0
    waiting = ""
    try:
        while True:
            for event in job.events[seen:]:
                at = event.at.astimezone(UTC).strftime("%H:%M:%S")
                say(f"{at} {event.to_status}: {event.reason}")
            seen = len(job.events)
            if job.status == JobStatus.QUEUED and queue_line(job) != waiting:
                waiting = queue_line(job)
                say(waiting)
            if job.status.is_final:
                break
            data, _, _ = client.read_log(job.run_id, offset, wait=_read_wait(job))
            offset += len(data)
            job = client.get_job(job.run_id)
    except KeyboardInterrupt:
        say(_stopped(job))
        return 130
    say(summary_line(client, job))
    for line in error_lines(client, job):
        say(line)
    return 0 if job.status == JobStatus.COMPLETED else 1


def _read_wait(job: JobOut) -> float:
    # A queued job's log does not move; its reason does, and is fetched between reads.
    return READ_WAIT_S if job.status == JobStatus.QUEUED else REFRESH_S


def _stopped(job: JobOut) -> str:
    return (
        f"Stopped watching job {job.run_id}; it goes on (`flowyard job cancel {job.run_id}` "
        "stops it)."
    )


class _View:
    """What the live view shows, brought up to date by the watch loop."""

    def __init__(self, client: Client, job: JobOut) -> None:
        self.client = client
        self.job = job
        self.tail = LogTail()
        self.data = facts.RunData()
        self.histories: dict[str, list[float]] = {}
        self.fetched = 0.0

    def refresh(self) -> None:
        self.job = self.client.get_job(self.job.run_id)
        self.data = facts.run_data(self.client, self.job.run_id, outputs=False)
        keys = list(self.data.metrics)[:METRICS_WATCHED]
        self.histories = {k: facts.metric_history(self.client, self.job.run_id, k) for k in keys}
        self.fetched = time.monotonic()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        from flowyard.display.terminal import status_style

        job = self.job
        head = Table.grid(padding=(0, 2))
        head.add_column(style="bold")
        head.add_column(overflow="fold")
        status = Text(job.status.value, style=status_style(job.status))
        if job.status == JobStatus.QUEUED:
            status.append(f"  {queue_line(job)}", style="default")
        head.add_row("status", status)
        head.add_row("compute", f"{job.compute} · entry point {job.entry_point} · by {job.user}")
        if times := facts.phases_text(job):
            head.add_row("time", times)
        head.add_row("studio", facts.studio_url(self.client.url, job))
        head.add_row("mlflow", facts.mlflow_url(self.client.url, job))

        timeline = Table("at", "to", "reason", box=None, padding=(0, 1), header_style="dim")
        for e in job.events[-8:]:
            at = e.at.astimezone(UTC).strftime("%H:%M:%S")
            timeline.add_row(at, Text(e.to_status.value, style=status_style(e.to_status)), e.reason)

        metrics = Table("metric", "last", "history", box=None, padding=(0, 1), header_style="dim")
        for key, value in self.data.metrics.items():
            spark = sparkline(self.histories.get(key, []))
            metrics.add_row(key, facts.number_text(value), Text(spark, style="cyan"))

        # The log tail takes what the other panels leave of the screen.
        used = 16 + min(len(job.events), 8) + len(self.data.metrics)
        tail = self.tail.last(max(5, options.size.height - used))
        log = Text("\n").join(Text.from_ansi(line) for line in tail) if tail else Text("")
        parts = [
            Panel(head, title=f"Job {job.run_id}", title_align="left", expand=True),
            Panel(timeline, title="timeline", title_align="left"),
        ]
        if self.data.metrics:
            parts.append(Panel(metrics, title="metrics", title_align="left"))
        parts.append(Panel(log, title="log", title_align="left"))
        yield Group(*parts)


def _watch_live(client: Client, job: JobOut, out: TextIO) -> int:
    from rich.live import Live

    from flowyard.display.terminal import console_for, summary

    console = console_for(out)
    view = _View(client, job)
    view.refresh()
    offset = 0
    try:
        with Live(view, console=console, refresh_per_second=4, transient=True) as live:
            while True:
                data, status, size = client.read_log(job.run_id, offset, wait=_read_wait(view.job))
                offset += len(data)
                view.tail.feed(data)
                if status.is_final and offset >= size:
                    break
                if status != view.job.status or time.monotonic() - view.fetched >= REFRESH_S:
                    view.refresh()
                live.refresh()
            view.refresh()
            live.refresh()
    except KeyboardInterrupt:
        console.print(_stopped(view.job))
        return 130
    console.print(view)
    console.print(summary(client, view.job, facts.run_data(client, view.job.run_id)))
    return 0 if view.job.status == JobStatus.COMPLETED else 1
