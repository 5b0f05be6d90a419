"""The studio's log viewer and failure triage: a job's log rendered a page of lines at a time,
searched over the whole stored log, and what the job page's error box says about a failure.

The rendering is :mod:`flowyard.server.services.log_view`'s; these routes answer JSON with
HTML in it for ``static/logs.js`` to put in the page. Both are reads: a ``reader`` may call them
(the studio's paths need a reader by default, see ``auth/policy.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from flowyard.errors import InvalidRequestError
from flowyard.schemas import JobStatus
from flowyard.server.db.models import Job, Snapshot
from flowyard.server.services import jobs as job_service
from flowyard.server.services import log_view
from flowyard.server.state import DbSession

PREFIX = "/studio"
MAX_OFFSET = 2**62
router = APIRouter(prefix=PREFIX, include_in_schema=False)


def _manifest_paths(session: Session, job: Job) -> list[str]:
    snapshot = session.get(Snapshot, job.snapshot_id)
    return [entry["path"] for entry in snapshot.manifest] if snapshot else []


# How a stderr line is told apart: a class for the eye (a mark in the gutter), a title for the
# pointer, and words in the line number's link for a screen reader (the gutter is not copied).
STDERR_MARK = ' title="Written to stderr"'
STDERR_WORDS = '<span class="sr">, stderr</span>'


def _line_html(job_id: str, line: log_view.Line, paths: list[str]) -> str:
    kind = f" {line.kind}" if line.kind else ""
    title, words = "", ""
    if line.stderr:
        kind += " se"
        title, words = STDERR_MARK, STDERR_WORDS
    text = line.html
    if line.frame and (path := log_view.snapshot_path(line.frame[0], paths)):
        href = f"{PREFIX}/jobs/{quote(job_id)}/snapshot/{quote(path)}#L-{line.frame[1]}"
        text += f' <a class="frame" href="{href}">{escape(path)}:{line.frame[1]}</a>'
    return (
        f'<div class="ll{kind}" id="L{line.number}"{title}><a class="ln" href="#L{line.number}">'
        f'{line.number}{words}</a><span class="lt">{text}</span></div>'
    )


@router.get("/jobs/{job_id}/log/lines")
def log_lines(
    job_id: str,
    session: DbSession,
    offset: int | None = Query(None, ge=0, le=MAX_OFFSET),
    line: int = Query(1, ge=1, le=MAX_OFFSET),
    state: str = Query("", max_length=64),
    tail: int | None = Query(None, ge=0, le=MAX_OFFSET),
    at_line: int | None = Query(None, ge=1, le=MAX_OFFSET),
) -> JSONResponse:
    """A page of whole lines (1 MiB at most) as HTML: from ``offset`` (whose line is number
    ``line`` and whose colours are ``state``, as the last page answered), from the line that
    starts the last ``tail`` bytes, or from line ``at_line``."""
    job = job_service.get(session, job_id)
    size = job.log_size
    if at_line is not None:
        offset, line = log_view.line_offset(session, job_id, size, at_line)
        state = ""
    elif offset is None:
        offset, line = log_view.tail_start(session, job_id, size, tail or 0)
        # The last lines only, when the tail holds more than a page's worth.
        data = job_service.read_log(session, job_id, offset, log_view.PAGE)
        skipped_bytes, skipped_lines = log_view.skip_to_last(data, log_view.MAX_LINES)
        offset, line, state = offset + skipped_bytes, line + skipped_lines, ""
    page = log_view.read_lines(session, job_id, offset, line, state, size)
    paths = _manifest_paths(session, job) if any(ln.frame for ln in page.lines) else []
    return JSONResponse(
        {
            "html": "".join(_line_html(job_id, ln, paths) for ln in page.lines),
            "offset": offset,
            "line": line,
            "lines": len(page.lines),
            "next_offset": page.next_offset,
            "next_line": page.next_line,
            "state": page.state,
            "partial": page.partial,
            "size": size,
            "status": job.status,
        }
    )


@router.get("/jobs/{job_id}/log/search")
def log_search(
    job_id: str,
    session: DbSession,
    q: str = Query("", max_length=log_view.MAX_QUERY),
    errors: bool = False,
    stderr: bool = False,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    line: int = Query(1, ge=1, le=MAX_OFFSET),
    limit: int = Query(log_view.MAX_MATCHES, ge=1, le=log_view.MAX_MATCHES),
) -> JSONResponse:
    """Lines of the whole stored log holding ``q`` (case-insensitive, as typed), or with
    ``errors`` the lines that read as errors; with ``stderr``, of the lines the job wrote to
    stderr only (all of them without ``q``). From ``offset`` (line ``line``) on, ``limit`` at
    most. ``next_offset``/``next_line`` say where to go on from when there is more to read."""
    term = q.strip()
    if not term and not errors and not stderr:
        raise InvalidRequestError(
            "Searching a log needs a term: ?q=WORDS (or ?errors=true, or ?stderr=true)."
        )
    job = job_service.get(session, job_id)
    wanted: Callable[[str, str], list[tuple[int, int]] | None]
    if errors:
        wanted = log_view.errors
    elif term:
        wanted = log_view.containing(term)
    else:
        wanted = log_view.every
    found = log_view.search(
        session, job_id, job.log_size, wanted, offset, line, limit, only_stderr=stderr
    )
    return JSONResponse(
        {
            "matches": [
                {
                    "line": m.number,
                    "offset": m.offset,
                    "kind": m.kind,
                    "stderr": m.stderr,
                    "html": m.html,
                }
                for m in found.matches
            ],
            "next_offset": found.next_offset,
            "next_line": found.next_line,
            "scanned": found.scanned,
            "size": job.log_size,
        }
    )


@dataclass
class Triage:
    """What the error box says beyond the runner's report."""

    headline: str = ""
    traceback: list[log_view.TracebackLine] = field(default_factory=list)
    # A failure without a Python traceback: the output's last lines.
    last_lines: list[str] = field(default_factory=list)


SIGTERM, SIGKILL = 15, 9


def triage(session: Session, job: Job, events: list[Any]) -> Triage:
    """Why the job ended, for a person: a cancel by whom, a kill that reads as out of memory, a
    traceback whose frames open the snapshot's files, or a failure's last output lines."""
    out = Triage()
    error = job.error or {}
    status = JobStatus(job.status)
    code = error.get("exit_code")
    signal = error.get("signal") or ""
    killed = code in (-SIGKILL, 128 + SIGKILL) or signal == "SIGKILL"
    terminated = code in (-SIGTERM, 128 + SIGTERM) or signal == "SIGTERM"
    reason = next((e.reason for e in reversed(events) if e.to_status == status), "")
    if status == JobStatus.CANCELED:
        out.headline = reason[:1].upper() + reason[1:] if reason else "Canceled"
    elif killed:
        out.headline = (
            "Killed (out of memory?): SIGKILL ended the process, which is what the kernel's "
            "out-of-memory killer sends; check the job's memory use and its compute's limit."
        )
    elif terminated:
        out.headline = "Terminated: SIGTERM ended the process, sent from outside the job."
    if status != JobStatus.FAILED:
        return out
    if error.get("traceback"):
        out.traceback = log_view.traceback_lines(error["traceback"], _manifest_paths(session, job))
    elif job.log_size:
        out.last_lines = log_view.last_lines(session, job.id, job.log_size)
    return out
