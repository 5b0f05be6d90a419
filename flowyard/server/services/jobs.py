"""Jobs: submission, heartbeats, cancel and logs; their status moves through lifecycle."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload

from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.schemas import ErrorInfo, JobStatus, JobSubmit, StatusUpdate
from flowyard.server.db.models import Compute, Job, JobKind, LogChunk, Snapshot, Sweep, utc_now
from flowyard.server.services import computes, lifecycle, runs
from flowyard.server.settings import ServerSettings

# A log read's page when the reader names no limit, and the most one read returns: a big log is
# read by following pages, and each read holds at most a page and the chunks it overlaps.
LOG_PAGE = 1024 * 1024
MAX_LOG_PAGE = 8 * 1024 * 1024


def get(session: Session, job_id: str, *, events: bool = False) -> Job:
    query = sa.select(Job).where(Job.id == job_id)
    if events:
        query = query.options(selectinload(Job.events))
    job = session.scalars(query).one_or_none()
    if job is None:
        raise NotFoundError(f"Job {job_id} does not exist in this workspace; check the run id.")
    return job


def list_jobs(
    session: Session,
    *,
    status: JobStatus | None = None,
    experiment_id: str | None = None,
    compute: str | None = None,
    limit: int = 100,
) -> list[Job]:
    query = sa.select(Job).order_by(Job.submitted_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    if experiment_id:
        query = query.where(Job.experiment_id == experiment_id)
    if compute:
        query = query.where(Job.compute == compute)
    return list(session.scalars(query))


def submit(
    session: Session,
    request: JobSubmit,
    submitted_from: str,
    seal: Callable[[str], str] | None = None,
    sealed_env: Mapping[str, str] | None = None,
    *,
    sweep: Sweep | None = None,
    trial: tuple[str, int] | None = None,
) -> Job:
    """Create the job and its MLflow run (one id for both). Nothing is left if a check fails.

    ``seal`` encrypts the request's secret ENV_VARS, which are stored only so; ``sealed_env``
    are secrets sealed already (a re-run's, kept from the job it repeats), which the request's
    own replace where the names meet.

    With ``sweep`` the job is that sweep (stored with it, in the same transaction): the sweep
    controller runs it, and it takes no slot. ``trial`` makes the job that trial (sweep id,
    trial number) of a sweep: a second job for one trial is refused by the database
    (IntegrityError), and nothing of it is left.
    """
    if request.secret_env and seal is None:
        raise InvalidRequestError("This request cannot carry secret ENV_VARS; submit them anew.")
    target = computes.named_target(session, request.compute)
    if session.get(Snapshot, request.snapshot_id) is None:
        raise InvalidRequestError(
            f"Snapshot {request.snapshot_id} is not in this workspace; upload it first."
        )
    tags = {
        **request.tags,
        "flowyard.compute": request.compute,
        "flowyard.snapshot": request.snapshot_id,
    }
    run_id = runs.create_run(
        request.experiment_id, request.user, request.run_name, tags, request.parameters
    )
    sealed = dict(sealed_env or {})
    if seal is not None:
        sealed.update((name, seal(value)) for name, value in request.secret_env.items())
    job = Job(
        id=run_id,
        experiment_id=request.experiment_id,
        snapshot_id=request.snapshot_id,
        project_uri=request.project_uri,
        entry_point=request.entry_point,
        parameters=request.parameters,
        environment=request.environment,
        options=request.options,
        compute=request.compute,
        priority=request.priority,
        max_retries=request.max_retries,
        # Where the runner uploads ./outputs, through MLflow's artifact proxy.
        artifact_uri=runs.artifact_uri(run_id),
        secret_env=sealed,
        cancel_requested=False,
        user=request.user,
        attempt=1,
        submitted_at=utc_now(),
        log_size=0,
    )
    if trial is not None:
        job.sweep_id, job.trial_number = trial
    if sweep is not None:
        job.kind = JobKind.SWEEP
        sweep.id = run_id
        session.add(sweep)
        reason = (
            f"sweep submitted from {submitted_from}; its trials run on {request.compute}, "
            "started by the workspace's sweep controller"
        )
        status = JobStatus.PREPARING
    elif target.starts_runners:
        compute = computes.get(session, request.compute)
        load = computes.counts(session).get(compute.name, {"active": 0, "queued": 0})
        reason = (
            f"submitted from {submitted_from}; queued on {compute.name}: "
            f"{load['active']} of {compute.max_concurrent_jobs} slots busy, "
            f"{load['queued']} ahead"
        )
        job.waiting_reason = reason
        status = JobStatus.QUEUED
    else:
        # The submitting machine starts the runner right away: nothing to queue for.
        reason = f"submitted from {submitted_from}; the runner starts on the submitting machine"
        status = JobStatus.PREPARING
    lifecycle.begin(job, status, reason)
    session.add(job)
    try:
        session.commit()
    except Exception:
        session.rollback()
        runs.delete_run(run_id)
        raise
    return job


def _locked(session: Session, job_id: str) -> Job:
    """The job row, locked until commit where the database can lock rows, as it is now (not as
    the session last saw it: a session that keeps its objects across commits, like the
    background loops', would otherwise act on a stale row)."""
    query = (
        sa.select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    job = session.scalars(query).one_or_none()
    if job is None:
        raise NotFoundError(f"Job {job_id} does not exist in this workspace; check the run id.")
    return job


def start(session: Session, job_id: str, host: str, pid: int, instance: str = "") -> Job:
    """A runner claims the job. Idempotent for the same runner, refused for a second one."""
    job = _locked(session, job_id)
    runner: dict[str, str | int] = {"host": host, "pid": pid}
    if instance:
        runner["instance"] = instance
    if job.runner not in (None, runner):
        raise ConflictError(f"Job {job_id} is already claimed by the runner {job.runner}.")
    if JobStatus(job.status).is_final:
        raise ConflictError(f"Job {job_id} has already ended ({job.status}).")
    job.runner = runner
    job.heartbeat_at = utc_now()
    # Queued or preparing, the run stays SCHEDULED: nothing to mirror.
    lifecycle.record(session, job, JobStatus.PREPARING, f"runner started on {host} (pid {pid})")
    session.commit()
    return job


def update_status(
    session: Session, job_id: str, update: StatusUpdate, settings: ServerSettings
) -> Job:
    job = _locked(session, job_id)
    if update.status == JobStatus.QUEUED:
        # A retry is the workspace's decision (its runner is lost), with a new attempt's token.
        raise ConflictError(
            f"Job {job_id}'s runner cannot put it back in the queue; the workspace retries a "
            "job whose runner is lost, as MAX_RETRIES allows."
        )
    reason, error = update.reason, update.error
    if update.status == JobStatus.CANCELED and job.cancel_reason:
        # Its runner stops it as any cancel; why it was asked to is the workspace's to say.
        reason, error = job.cancel_reason, ErrorInfo(message=job.cancel_reason)
    lifecycle.move(
        session, job, update.status, reason, settings, error=error, exit_code=update.exit_code
    )
    return job


def heartbeat(session: Session, job_id: str) -> Job:
    job = get(session, job_id)
    job.heartbeat_at = utc_now()
    session.commit()
    return job


CANCELED_BY_USER = "canceled by the user"


def cancel(
    session: Session, job_id: str, settings: ServerSettings, reason: str = CANCELED_BY_USER
) -> Job:
    """Ask the job to stop. A job nobody runs yet ends at once; a running one at its runner's
    next heartbeat."""
    job = _locked(session, job_id)
    status = JobStatus(job.status)
    if status.is_final:
        session.commit()
        return job
    job.cancel_requested = True
    if reason != CANCELED_BY_USER:
        job.cancel_reason = reason
    if status == JobStatus.QUEUED or job.runner is None:
        lifecycle.move(
            session, job, JobStatus.CANCELED, reason, settings, error=ErrorInfo(message=reason)
        )
    else:
        session.commit()
    return job


def append_log(session: Session, job_id: str, offset: int, data: bytes) -> int:
    """Append ``data`` at byte ``offset``; bytes already stored at their offset (a retry) are
    not stored again.

    Returns:
        The log's size after the append.
    """
    for _ in range(10):
        job = _locked(session, job_id)
        size = job.log_size
        if offset > size:
            raise ConflictError(
                f"Log append at {offset} would leave a gap in job {job_id}'s log "
                f"({size} bytes); resend from {size}."
            )
        # A retry whose first bytes are already stored (the answer to the first try was lost,
        # and more output has come since): keep only what is new.
        new = data[size - offset :]
        if not new:
            session.commit()
            return size
        try:
            # Conditional on the size read above, so two writers (a runner and the workspace's
            # own note) never both take one offset, on SQLite too, where rows are not locked.
            moved = session.execute(
                sa.update(Job)
                .where(Job.id == job_id, Job.log_size == size)
                .values(log_size=size + len(new))
                .execution_options(synchronize_session=False)
            )
            if getattr(moved, "rowcount", 1) != 1:
                session.rollback()
                continue
            session.add(LogChunk(job_id=job_id, offset=size, data=new, at=utc_now()))
            session.commit()
        except (IntegrityError, OperationalError):
            session.rollback()
            continue
        return size + len(new)
    raise ConflictError(f"The log of job {job_id} is being written by too many at once; retry.")


def read_log(session: Session, job_id: str, offset: int = 0, limit: int = LOG_PAGE) -> bytes:
    """The log's bytes from ``offset``: at most ``limit`` of them, and never more than
    :data:`MAX_LOG_PAGE`, so a read holds a page of the log, however long it is."""
    get(session, job_id)
    end = offset + min(limit, MAX_LOG_PAGE)
    # The chunk that holds `offset` starts at the greatest chunk offset at or before it (chunks
    # leave no gaps); from there the primary key's order reaches every chunk up to `end`.
    first = (
        sa.select(sa.func.coalesce(sa.func.max(LogChunk.offset), 0))
        .where(LogChunk.job_id == job_id, LogChunk.offset <= offset)
        .scalar_subquery()
    )
    query = (
        sa.select(LogChunk.offset, LogChunk.data)
        .where(LogChunk.job_id == job_id, LogChunk.offset >= first, LogChunk.offset < end)
        .order_by(LogChunk.offset)
    )
    parts = []
    for start_at, data in session.execute(query):
        parts.append(data[max(offset - start_at, 0) : end - start_at])
    return b"".join(parts)


def waiting_reason(session: Session, job: Job) -> str | None:
    """Why a queued job still waits, as of now: its compute's busy slots and the jobs ahead of it
    in the dispatcher's order (higher priority first, then older)."""
    if job.status != JobStatus.QUEUED:
        return None
    compute = session.get(Compute, job.compute)
    if compute is None:
        return job.waiting_reason
    active = session.scalar(
        sa.select(sa.func.count()).where(Job.compute == job.compute, computes.takes_slot())
    )
    earlier = sa.or_(
        Job.submitted_at < job.submitted_at,
        sa.and_(Job.submitted_at == job.submitted_at, Job.id < job.id),
    )
    ahead = session.scalar(
        sa.select(sa.func.count()).where(
            Job.compute == job.compute,
            Job.status == JobStatus.QUEUED,
            sa.or_(Job.priority > job.priority, sa.and_(Job.priority == job.priority, earlier)),
        )
    )
    return f"{compute.name}: {active} of {compute.max_concurrent_jobs} slots busy, {ahead} ahead"


def requeue(session: Session, job: Job, reason: str, settings: ServerSettings) -> None:
    """Put a job whose runner was lost back in its queue, as its next attempt."""
    fresh = _locked(session, job.id)
    if JobStatus(fresh.status).is_final:
        session.commit()
        return
    lifecycle.move(session, fresh, JobStatus.QUEUED, reason, settings)
    append_note(session, fresh.id, reason)


def append_note(session: Session, job_id: str, text: str) -> None:
    """A line from the workspace itself in the job's log (a retry, a lost runner)."""
    # Read from the row, not from a job the session holds already (whose size may be stale).
    size = session.scalar(sa.select(Job.log_size).where(Job.id == job_id))
    if size is None:
        raise NotFoundError(f"Job {job_id} does not exist in this workspace; check the run id.")
    session.commit()
    append_log(session, job_id, size, f"[flowyard] {text}\n".encode())
