"""Jupyter: a job as a small run table that updates in place, and a log without control codes.

The table goes out through IPython's display protocol (one display, updated by its id), so a
saved notebook keeps its last state as HTML, with plain text beside it for anything that does
not render HTML. The log is written to the cell's output with terminal escape sequences taken
out; carriage returns stay, since Jupyter draws a line rewritten by one as a terminal does.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from html import escape
from typing import Any, TextIO

from flowyard.client import Client
from flowyard.display import facts
from flowyard.display.lines import TRACEBACK_TAIL, SnapshotLine, queue_line, summary_line
from flowyard.env import phases
from flowyard.schemas import JobOut, JobStatus
from flowyard.snapshot.manifest import size_text

# How often the table is brought up to date while a job goes on (status, queue, metrics).
REFRESH_S = 2.0
# Snapshot progress is redrawn at most this often.
_PROGRESS_S = 0.25
# CSI and OSC sequences, and the other escapes (charsets, keypad modes): colours, cursor
# moves, titles.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_COLOURS = {
    JobStatus.COMPLETED: "#2e7d32",
    JobStatus.FAILED: "#c62828",
    JobStatus.CANCELED: "#8d6e00",
}
_CELL = "padding:2px 10px;text-align:left;vertical-align:top"


def for_notebook(text: str) -> str:
    """``text`` without escape sequences or control characters other than newline, tab and
    carriage return."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text).replace("\r\n", "\n"))


class _Display:
    """One display in the cell's output: shown once, then updated in place."""

    def __init__(self) -> None:
        from IPython.display import display

        self._display: Callable[..., Any] = display
        self._handle: Any = None

    def show(self, html: str, text: str) -> None:
        bundle = {"text/html": html, "text/plain": text}
        if self._handle is None:
            self._handle = self._display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)


def _error_html(job: JobOut) -> str:
    err = job.error
    if err is None or job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
        return ""
    title = "Canceled" if job.status == JobStatus.CANCELED else "Failed"
    if err.type:
        title += f": {err.type}"
    exits = [f"exit code {err.exit_code}"] if err.exit_code is not None else []
    exits += [f"signal {err.signal}"] if err.signal else []
    exits.append(f"the whole log: <code>flowyard job logs {escape(job.run_id)}</code>")
    parts = [f"<b>{escape(title)}</b>"]
    if err.message:
        parts.append(f"<div>{escape(err.message)}</div>")
    parts.append(f"<div style='opacity:.7'>{' · '.join(exits)}</div>")
    if err.traceback:
        tail = "\n".join(err.traceback.splitlines()[-TRACEBACK_TAIL:])
        parts.append(f"<pre style='margin:4px 0 0'>{escape(tail)}</pre>")
    return (
        "<div style='border-left:4px solid #c62828;padding:4px 10px;margin-top:6px'>"
        + "".join(parts)
        + "</div>"
    )


def job_html(workspace_url: str, job: JobOut, data: facts.RunData, detail: str = "") -> str:
    """The run table: run, compute, status (and why it waits), time per phase, latest metrics,
    outputs and links; a failed job's error below it."""
    colour = _COLOURS.get(job.status, "#1565c0")
    status = f"<b style='color:{colour}'>{escape(job.status)}</b>"
    if detail:
        status += f"<br><small>{escape(detail)}</small>"
    took = facts.total_time(job)
    time_cell = escape(facts.duration_text(took)) if took is not None else ""
    if times := facts.phases_text(job):
        time_cell += f"<br><small>{escape(times)}</small>"
    metrics = "<br>".join(
        f"{escape(k)} <b>{escape(facts.number_text(v))}</b>" for k, v in data.metrics.items()
    )
    outputs = "<br>".join(
        f"{escape(o.path.removeprefix('outputs/'))} <small>{size_text(o.size)}</small>"
        for o in data.outputs
    )
    if more := data.outputs_total - len(data.outputs):
        outputs += f"<br><small>{more} more</small>"
    links = (
        f"<a href='{escape(facts.studio_url(workspace_url, job))}' target='_blank'>Studio</a>"
        f" · <a href='{escape(facts.mlflow_url(workspace_url, job))}' target='_blank'>MLflow</a>"
    )
    run = f"<code>{escape(job.run_id)}</code>"
    if data.run_name:
        run = f"{escape(data.run_name)}<br>{run}"
    cells = {
        "Run": run,
        "Compute": escape(job.compute),
        "Status": status,
        "Time": time_cell,
        "Metrics": metrics or "<small>none yet</small>",
        "Outputs": outputs or "<small>none</small>",
        "Details": links,
    }
    head = "".join(f"<th style='{_CELL}'>{name}</th>" for name in cells)
    row = "".join(f"<td style='{_CELL}'>{value}</td>" for value in cells.values())
    return (
        f"<div class='flowyard-job'><table><thead><tr>{head}</tr></thead>"
        f"<tbody><tr>{row}</tr></tbody></table>{_error_html(job)}</div>"
    )


def job_text(client: Client, job: JobOut, data: facts.RunData) -> str:
    """The table's plain-text stand-in."""
    lines = [summary_line(client, job) if job.status.is_final else f"Job {job.run_id} {job.status}"]
    if data.metrics:
        lines.append(" · ".join(f"{k} {facts.number_text(v)}" for k, v in data.metrics.items()))
    return "\n".join(lines)


def _detail(job: JobOut, phase: phases.Phase | None) -> str:
    if job.status == JobStatus.QUEUED:
        return queue_line(job)
    if job.status == JobStatus.PREPARING and phase is not None:
        text = f"environment: {phase.name} {phase.count}"
        return text + (f" ({phase.done} of {phase.total} downloads)" if phase.total else "")
    return ""


class NotebookFollower:
    """Follows a job in a notebook cell: the run table on top, updated as the job goes on, and
    its log below."""

    def __init__(self, client: Client, out: TextIO, *, stream: bool) -> None:
        self._display = _Display()
        self._client = client
        self._out = out
        self._stream = stream
        self._job: JobOut | None = None
        self._data = facts.RunData()
        self._phase: phases.Phase | None = None
        self._partial = b""
        self._fetched = 0.0

    def _show(self) -> None:
        if self._job is None:
            return
        html = job_html(self._client.url, self._job, self._data, _detail(self._job, self._phase))
        self._display.show(html, job_text(self._client, self._job, self._data))

    def start(self, job: JobOut) -> None:
        self._job = job
        self._fetched = time.monotonic()
        self._show()

    def wait_s(self, status: JobStatus) -> float:
        return REFRESH_S

    def wants_job(self, status: JobStatus, changed: bool) -> bool:
        return changed or time.monotonic() - self._fetched >= REFRESH_S

    def job(self, job: JobOut) -> None:
        self._job = job
        self._fetched = time.monotonic()
        if job.status in (JobStatus.RUNNING, JobStatus.FINALIZING):
            self._data = facts.run_data(self._client, job.run_id, outputs=False)
        self._show()

    def log(self, data: bytes, status: JobStatus) -> None:
        if not data:
            return
        if self._stream:
            self._out.write(for_notebook(data.decode(errors="replace")))
            self._out.flush()
        if status != JobStatus.PREPARING:
            return
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-4096:]
        for raw in lines:
            if phase := phases.parse(raw.decode(errors="replace"), self._phase):
                self._phase = phase
                self._show()

    def end(self, job: JobOut) -> None:
        self._job = job
        self._phase = None
        self._data = facts.run_data(self._client, job.run_id)
        self._show()

    def close(self) -> None:
        pass


class NotebookSnapshotProgress(SnapshotLine):
    """A progress bar under the cell while the snapshot is hashed and sent, then its line."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._display = _Display()
        self._step = ""
        self._files = self._size = 0
        self._files_done = self._size_done = 0
        self._drawn = 0.0
        self._draw_lock = threading.Lock()

    def _draw_progress(self) -> None:
        text = (
            f"{self._step} {self._files_done:,}/{self._files:,} files, "
            f"{size_text(self._size_done)} of {size_text(self._size)}"
        )
        html = (
            f"<progress value='{self._size_done}' max='{max(self._size, 1)}'></progress> "
            f"<small>{escape(text)}</small>"
        )
        self._display.show(html, text)
        self._drawn = time.monotonic()

    def _begin(self, step: str, files: int, size: int) -> None:
        with self._draw_lock:
            self._step, self._files, self._size = step, files, size
            self._files_done = self._size_done = 0
            self._draw_progress()

    def hashing(self, files: int, size: int, unchanged_files: int, unchanged_size: int) -> None:
        super().hashing(files, size, unchanged_files, unchanged_size)
        self._begin("hashing", files, size)

    def uploading(self, files: int, size: int, present_files: int, present_size: int) -> None:
        super().uploading(files, size, present_files, present_size)
        self._begin("uploading", files, size)

    def advance(self, size: int, files: int = 0) -> None:
        with self._draw_lock:
            self._files_done += files
            self._size_done += size
            if time.monotonic() - self._drawn >= _PROGRESS_S:
                self._draw_progress()

    def _show(self, text: str) -> None:
        with self._draw_lock:
            self._display.show(f"<small>{escape(text)}</small>", text)
