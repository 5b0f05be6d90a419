"""How a job shows where it was submitted: on a terminal, in a notebook, or as plain lines.

Three ways to show the same things (snapshot progress, the queue, the environment build, the
job's log and its closing summary), picked by where the output goes:

- ``terminal`` (``terminal.py``): an interactive terminal gets live progress drawn with rich
  and a closing summary box;
- ``notebook`` (``notebook.py``): a Jupyter kernel gets a run table that updates in place, and
  the log without control sequences;
- ``lines`` (``lines.py``): anything else (a file, CI, a pipe), or ``STREAM_OUTPUT: False``,
  gets at most one line per phase and nothing that moves the cursor.

``facts.py`` holds what all three show (phase times, links, metrics and outputs read from
MLflow), and ``watch.py`` is `flowyard job watch`. rich and IPython are imported only by the ways
that use them, so a submit whose output goes to a file loads neither.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TextIO

if TYPE_CHECKING:
    from flowyard.client import Client
    from flowyard.display.lines import SnapshotLine
    from flowyard.schemas import JobOut, JobStatus


class Mode(StrEnum):
    TERMINAL = "terminal"
    NOTEBOOK = "notebook"
    LINES = "lines"


def in_notebook(stream: TextIO) -> bool:
    """Whether ``stream`` is a Jupyter kernel's output (ipykernel replaces sys.stdout and
    sys.stderr with streams of its own)."""
    if not type(stream).__module__.startswith("ipykernel"):
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def mode_for(stream: TextIO, *, quiet: bool = False) -> Mode:
    """How to show progress on ``stream``; ``quiet`` (``STREAM_OUTPUT: False``) keeps a terminal
    to plain lines, while a notebook still gets its table."""
    if in_notebook(stream):
        return Mode.NOTEBOOK
    if quiet or os.environ.get("TERM") == "dumb":
        return Mode.LINES
    try:
        return Mode.TERMINAL if stream.isatty() else Mode.LINES
    except (AttributeError, ValueError):  # a stream without a file, or a closed one
        return Mode.LINES


class Follower(Protocol):
    """What ``Job.wait()`` tells the view of a job it follows, in this order: ``start``, then
    ``log`` after every log read (and ``job`` whenever ``wants_job`` asked for a fresh job),
    then ``end`` with the final job; ``close`` always, last, even after Ctrl-C."""

    def start(self, job: JobOut) -> None: ...

    def wait_s(self, status: JobStatus) -> float:
        """How long the next log read may wait for news."""
        ...

    def wants_job(self, status: JobStatus, changed: bool) -> bool:
        """Whether to fetch the job again after this read (the queue's reason is not in the
        log's answer; neither are metrics)."""
        ...

    def job(self, job: JobOut) -> None: ...

    def log(self, data: bytes, status: JobStatus) -> None: ...

    def end(self, job: JobOut) -> None: ...

    def close(self) -> None: ...


def follower(client: Client, out: TextIO, *, stream: bool) -> Follower:
    """The view for following a job on ``out``; ``stream`` shows its log."""
    mode = mode_for(out, quiet=not stream)
    if mode == Mode.NOTEBOOK:
        from flowyard.display.notebook import NotebookFollower

        return NotebookFollower(client, out, stream=stream)
    if mode == Mode.TERMINAL:
        from flowyard.display.terminal import TerminalFollower

        return TerminalFollower(client, out)
    from flowyard.display.lines import LinesFollower

    return LinesFollower(client, out, stream=stream)


def snapshot_progress(out: TextIO, *, quiet: bool = False) -> SnapshotLine:
    """What shows a snapshot's hashing and upload on ``out``: a context manager around the
    snapshot, and the ``progress`` to give ``build_manifest`` and ``upload``."""
    mode = mode_for(out, quiet=quiet)
    if mode == Mode.NOTEBOOK:
        from flowyard.display.notebook import NotebookSnapshotProgress

        return NotebookSnapshotProgress(out)
    if mode == Mode.TERMINAL:
        from flowyard.display.terminal import TerminalSnapshotProgress

        return TerminalSnapshotProgress(out)
    from flowyard.display.lines import SnapshotLine

    return SnapshotLine(out)
