"""An environment build's phases, as lines of the job log that a submitter can follow.

The builder runs on the compute; its progress reaches whoever waits for the job only through
the job's log. So the builder writes a line at each phase (resolving, downloading, installing),
and the terminal or notebook that follows the log draws them as progress. The lines read well
as they are too, in the studio's log and in a log file:

    [flowyard] environment: resolving 3 requirements
    [flowyard] environment: downloading 30 packages
    [flowyard] environment: downloaded numpy (1 of 2)
    [flowyard] environment: installing 30 packages

This module writes them (from uv's own output, which it watches go by) and reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

PREFIX = "[flowyard] environment: "

_PHASE = re.compile(
    r"\[flowyard\] environment: (resolving|downloading|installing) (\d+) "
    r"(?:requirements?|packages?)"
)
_DOWNLOADED = re.compile(r"\[flowyard\] environment: downloaded (\S+) \((\d+) of (\d+)\)")

# uv's lines (uv pip install, progress off) that mark the end of a phase or one download.
_UV_RESOLVED = re.compile(rb"Resolved (\d+) packages? in ")
_UV_PREPARED = re.compile(rb"Prepared (\d+) packages? in ")
_UV_FETCHING = re.compile(rb"\s*(?:Downloading|Building) (\S+)")
_UV_FETCHED = re.compile(rb"\s+(?:Downloaded|Built) (\S+)")


@dataclass(frozen=True)
class Phase:
    """Where a build is: ``name`` with ``count`` requirements or packages; while downloading,
    ``done`` of ``total`` big downloads (the ones uv names) and the last one, ``item``."""

    name: str
    count: int = 0
    done: int = 0
    total: int = 0
    item: str = ""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def resolving_line(requirements: int) -> bytes:
    return f"{PREFIX}resolving {_plural(requirements, 'requirement')}\n".encode()


def parse(line: str, current: Phase | None = None) -> Phase | None:
    """The phase a log line announces (``current`` carries a download's count on), or None for
    any other line."""
    line = line.rstrip("\r\n")
    if not line.startswith(PREFIX):
        return None
    if m := _PHASE.fullmatch(line):
        return Phase(m.group(1), int(m.group(2)))
    if m := _DOWNLOADED.fullmatch(line):
        count = current.count if current else 0
        return Phase("downloading", count, int(m.group(2)), int(m.group(3)), m.group(1))
    return None


class UvWatcher:
    """Passes uv's output on to ``log`` unchanged, and writes a phase line where uv's output says
    one ended: ``Resolved N packages``, each big download done, ``Prepared N packages``."""

    def __init__(self, log: Callable[[bytes], None]) -> None:
        self._log = log
        self._partial = b""
        self._packages = 0
        self._fetching: set[bytes] = set()
        self._fetched = 0

    def __call__(self, chunk: bytes) -> None:
        self._log(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()[-4096:]  # a line without its end yet; uv's are short
        for line in lines:
            self._watch(line.rstrip(b"\r"))

    def _watch(self, line: bytes) -> None:
        if m := _UV_RESOLVED.match(line):
            self._packages = int(m.group(1))
            self._say(f"downloading {_plural(self._packages, 'package')}")
        elif m := _UV_FETCHED.match(line):
            self._fetched += 1
            name = m.group(1).decode(errors="replace")
            total = max(len(self._fetching), self._fetched)
            self._say(f"downloaded {name} ({self._fetched} of {total})")
        elif m := _UV_FETCHING.match(line):
            self._fetching.add(m.group(1))
        elif m := _UV_PREPARED.match(line):
            self._say(f"installing {_plural(self._packages or int(m.group(1)), 'package')}")

    def _say(self, text: str) -> None:
        self._log(f"{PREFIX}{text}\n".encode())
