"""A job's lifecycle, the one writer of its status: which status may follow which, the event each
move leaves on the job's timeline, what a retry resets, and the job's MLflow run kept in step.

queued → preparing → running → finalizing → completed; failed or canceled from any status not
final, since a runner can die or be stopped at any step; back to queued from any status not final
as the job's next attempt (a retry). A final status is never left.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard import disks
from flowyard.errors import ConflictError
from flowyard.schemas import ErrorInfo
from flowyard.server import mlflow_internals
from flowyard.server.db.models import Job, JobEvent, LogChunk, utc_now
from flowyard.server.services import runs
from flowyard.server.settings import ServerSettings
from flowyard.status import JobStatus

_NEXT: dict[JobStatus, JobStatus] = {
    JobStatus.QUEUED: JobStatus.PREPARING,
    JobStatus.PREPARING: JobStatus.RUNNING,
    JobStatus.RUNNING: JobStatus.FINALIZING,
    JobStatus.FINALIZING: JobStatus.COMPLETED,
}
_ALWAYS = {JobStatus.FAILED, JobStatus.CANCELED}
log = logging.getLogger(__name__)

# MLflow run statuses that end a run: a job's entry point may not set them on its own run while
# the job goes on (its outputs are not uploaded yet, and its own end decides the run's).
ENDING_RUN_STATUSES = frozenset({"FINISHED", "FAILED", "KILLED"})


@dataclass(frozen=True)
class Move:
    """One status change of one job, and what its MLflow run needs to follow it."""

    job_id: str
    before: JobStatus
    after: JobStatus

    @property
    def run_status(self) -> str | None:
        """The run's new MLflow status, or None where the run's stays as it is (running →
        finalizing leaves it RUNNING: no write, and the runner goes on sooner)."""
        if self.after.is_final or self.after.mlflow_status != self.before.mlflow_status:
            return self.after.mlflow_status
        return None


def check(current: JobStatus, to: JobStatus, job_id: str = "") -> Move | None:
    """Job ``job_id``'s move from ``current`` to ``to``; None where the job is there already (a
    repeated report), so every move may be retried.

    Raises:
        ConflictError: the table does not allow it.
    """
    if current == to:
        return None
    if current.is_final or not (
        to in _ALWAYS or to == JobStatus.QUEUED or _NEXT.get(current) == to
    ):
        raise ConflictError(f"Job {job_id or '?'} cannot go from {current} to {to}.")
    return Move(job_id, current, to)


def retry_fields(attempt: int, reason: str) -> dict[str, Any]:
    """What a retry sets on its job: the next attempt, with no runner yet (a new runner claims
    it, with the next attempt's token), and why it waits."""
    return {
        "attempt": attempt + 1,
        "runner": None,
        "external_id": None,
        "heartbeat_at": None,
        "waiting_reason": reason,
    }


def hold_run(body: dict[str, object]) -> dict[str, object]:
    """A ``runs/update`` body that would end a job's run while the job goes on, made to keep it
    RUNNING (and without an end time); other fields pass unchanged."""
    if body.get("status") not in ENDING_RUN_STATUSES:
        return body
    return {k: v for k, v in body.items() if k != "end_time"} | {"status": "RUNNING"}


def begin(job: Job, status: JobStatus, reason: str) -> None:
    """A new job's first status and event (its run is created SCHEDULED, which both mirror)."""
    if status not in (JobStatus.QUEUED, JobStatus.PREPARING):
        raise ConflictError(f"Job {job.id} cannot begin {status}; it begins queued or preparing.")
    job.status = status
    job.events.append(
        JobEvent(at=job.submitted_at, from_status=None, to_status=status, reason=reason)
    )


def record(session: Session, job: Job, to: JobStatus, reason: str) -> Move | None:
    """Move ``job`` to ``to`` in ``session`` (the caller commits, then calls :func:`mirror`),
    with its event; None and no change where it is there already.

    Raises:
        ConflictError: the table does not allow it.
    """
    move = check(JobStatus(job.status), to, job.id)
    if move is None:
        return None
    now = utc_now()
    job.status = to
    if to == JobStatus.RUNNING:
        job.started_at = now
    if to.is_final:
        job.ended_at = now
    if to == JobStatus.QUEUED:
        for name, value in retry_fields(job.attempt, reason).items():
            setattr(job, name, value)
    session.add(
        JobEvent(job_id=job.id, at=now, from_status=move.before, to_status=to, reason=reason)
    )
    return move


def move(
    session: Session,
    job: Job,
    to: JobStatus,
    reason: str,
    settings: ServerSettings,
    *,
    error: ErrorInfo | None = None,
    exit_code: int | None = None,
) -> Move | None:
    """Move ``job`` to ``to``, commit, and bring its run along (see :func:`record`)."""
    done = record(session, job, to, reason)
    if exit_code is not None:
        job.exit_code = exit_code
    if error is not None:
        job.error = error.model_dump()
    session.commit()
    if done is not None:
        mirror(session, done, settings)
    return done


def mirror(session: Session, done: Move, settings: ServerSettings) -> None:
    """Bring the job's MLflow run to the status a committed move left the job in; a final
    status ends the run (see :func:`end_run`)."""
    if done.run_status is None:
        return
    if done.after.is_final:
        end_run(session, done.job_id, done.after, settings)
    else:
        runs.set_run_status(done.job_id, done.after)


def end_run(session: Session, job_id: str, status: JobStatus, settings: ServerSettings) -> None:
    """End the job's MLflow run as its final ``status`` says, with the log the workspace holds
    as `logs/std_log.txt`. Repeatable: the log is stored again whole."""
    runs.set_run_status(job_id, status)
    job = session.get(Job, job_id)
    try:
        runs.upload_log(
            job_id,
            _log(session, job_id),
            settings.artifacts_destination,
            job.artifact_uri if job is not None else None,
        )
    except OSError as e:
        if not disks.is_full(e):
            raise
        # The job has ended all the same, and its log is still served from the database.
        log.warning("job %s: %s", job_id, disks.full_message(e.filename or "?", "its log"))


def repair_runs(session: Session, settings: ServerSettings, ended_before: datetime) -> list[str]:
    """End the runs of final jobs that are still open: a server stopped between a job's final
    move and its run's end (killed mid-request), and no report came again. Only jobs that ended
    before ``ended_before``, so a run being ended right now is left to its own request.

    Returns:
        The ids of the jobs whose runs it ended.
    """
    query = sa.select(Job.id, Job.status).where(
        Job.status.in_([s.value for s in JobStatus if s.is_final]), Job.ended_at < ended_before
    )
    found = session.execute(mlflow_internals.with_open_run(query, Job.id)).tuples().all()
    session.commit()
    for job_id, status in found:
        end_run(session, job_id, JobStatus(status), settings)
    return [job_id for job_id, _ in found]


def _log(session: Session, job_id: str) -> Iterator[bytes]:
    # Chunks never overlap (an append stores only new bytes), so in order they are the log;
    # fetched a few at a time, so a long log is never held whole.
    query = (
        sa.select(LogChunk.data)
        .where(LogChunk.job_id == job_id)
        .order_by(LogChunk.offset)
        .execution_options(yield_per=16)
    )
    yield from session.scalars(query)
