"""Jobs: submission, heartbeats, cancel and logs; their status moves through lifecycle."""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence

import sqlalchemy as sa
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload

from flowyard import log_ranges
from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.log_ranges import Range
from flowyard.schemas import ErrorInfo, JobStatus, JobSubmit, StatusUpdate
from flowyard.server import mlflow_internals
from flowyard.server.auth.tokens import Keys
from flowyard.server.db.models import Compute, Job, JobKind, LogChunk, Sweep, utc_now
from flowyard.server.services import computes, lifecycle, runs, snapshots
from flowyard.server.settings import ServerSettings

# A log read's page when the reader names no limit, and the most one read returns: a big log is
# read by following pages, and each read holds at most a page and the chunks it overlaps.
LOG_PAGE = 1024 * 1024
MAX_LOG_PAGE = 8 * 1024 * 1024
# The run a submission makes carries the workspace's mark (Keys.run_mark) in this tag: a run so
# marked without a job is a submission's that did not complete.
SUBMITTED_TAG = "flowyard.submitted"


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


def studio_link(run_id: str) -> str:
    """The markdown that leads from MLflow's run page back to the job's page in the studio
    (served by the same workspace, so a path is enough)."""
    return f"Flowyard job: [{run_id}](/studio/jobs/{run_id}) (status, logs, snapshot, rerun)"


def submit(
    session: Session,
    request: JobSubmit,
    submitted_from: str,
    keys: Keys | None = None,
    sealed_env: Mapping[str, str] | None = None,
    *,
    sweep: Sweep | None = None,
    trial: tuple[str, int] | None = None,
) -> tuple[Job, bool]:
    """Create the job and its MLflow run (one id for both). Nothing is left if a check fails.

    A request with a submission key its user has sent before gets the job that one made (a
    retry whose answer was lost), and nothing new.

    ``keys`` seal the request's secret ENV_VARS, which are stored only so, and mark the run as
    a submission's (see :func:`settle_orphans`); ``sealed_env`` are secrets sealed already (a
    re-run's, kept from the job it repeats), which the request's own replace where the names
    meet.

    With ``sweep`` the job is that sweep (stored with it, in the same transaction): the sweep
    controller runs it, and it takes no slot. ``trial`` makes the job that trial (sweep id,
    trial number) of a sweep: a second job for one trial is refused by the database
    (IntegrityError), and nothing of it is left.

    Returns:
        The job, and whether this request created it.
    """
    if request.secret_env and keys is None:
        raise InvalidRequestError("This request cannot carry secret ENV_VARS; submit them anew.")
    if (earlier := _submitted_before(session, request)) is not None:
        return earlier, False
    target = computes.named_target(session, request.compute)
    target.check_environment(request.environment)
    # Marked used: the collector keeps it at least its grace period, job or no job yet.
    if not snapshots.touch_snapshot(session, request.snapshot_id):
        raise InvalidRequestError(
            f"Snapshot {request.snapshot_id} is not in this workspace; upload it first."
        )
    tags = {
        **request.tags,
        # One name for one user in both UIs: the job's user (with sign-in, the token's) is the
        # run's, whatever name the submitting machine's account has.
        "mlflow.user": request.user,
        "flowyard.compute": request.compute,
        "flowyard.snapshot": request.snapshot_id,
    }
    start_ms = int(time.time() * 1000)
    if keys is not None:
        tags[SUBMITTED_TAG] = keys.run_mark(request.experiment_id, start_ms)
    run_id = runs.create_run(
        request.experiment_id,
        request.user,
        request.run_name,
        tags,
        request.parameters,
        start_ms,
        note=studio_link,
    )
    sealed = dict(sealed_env or {})
    if keys is not None:
        sealed.update((name, keys.encrypt(value)) for name, value in request.secret_env.items())
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
        submission_key=request.submission_key,
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
    except Exception as e:
        session.rollback()
        runs.delete_run(run_id)
        # The same submission sent twice at once: the other request's job is the one.
        if (
            isinstance(e, IntegrityError)
            and (earlier := _submitted_before(session, request)) is not None
        ):
            return earlier, False
        raise
    return job, True


def _submitted_before(session: Session, request: JobSubmit) -> Job | None:
    """The job an earlier request with this one's submission key made, if any.

    Raises:
        ConflictError: the key was used for another submission.
    """
    if request.submission_key is None:
        return None
    job = session.scalars(
        sa.select(Job).where(Job.user == request.user, Job.submission_key == request.submission_key)
    ).one_or_none()
    if job is None:
        return None
    if (job.snapshot_id, job.experiment_id, job.entry_point, job.parameters, job.compute) != (
        request.snapshot_id,
        request.experiment_id,
        request.entry_point,
        request.parameters,
        request.compute,
    ):
        raise ConflictError(
            f"Submission key {request.submission_key} was used for job {job.id}, a different "
            "submission; send a new key with each new submission."
        )
    return job


def settle_orphans(session: Session, keys: Keys, started_before_ms: int) -> list[str]:
    """End and delete the runs that a submission made without its job (the server stopped
    between creating the run and committing the job, or the commit failed and so did the run's
    removal). Only runs started before ``started_before_ms``, since a submission in flight has
    not committed its job yet, and only runs that carry this workspace's mark for their
    experiment and start time: a tag anyone may write never gets another's run deleted.

    Returns:
        The ids of the runs settled.
    """
    candidates = mlflow_internals.open_tagged_runs(SUBMITTED_TAG, started_before_ms).where(
        ~sa.exists().where(Job.id == mlflow_internals.run_id_column())
    )
    found = [
        run_id
        for run_id, experiment_id, start_ms, mark in session.execute(candidates).tuples()
        if hmac.compare_digest(str(mark), keys.run_mark(str(experiment_id), int(start_ms)))
    ]
    session.commit()
    settled = []
    for run_id in found:
        try:
            runs.settle_orphan(
                run_id,
                "the submission that made this run did not complete, and no job runs it; "
                "submit the project again",
            )
        except MlflowException:
            continue  # another server process settled it first
        settled.append(run_id)
    return settled


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


def cut_mark(max_bytes: int) -> bytes:
    """The line that ends a log cut at ``max_bytes``."""
    return (
        f"\n[flowyard] log cut here: it reached the workspace's limit of {max_bytes:,} bytes "
        "(flowyard server --max-log-mb); the rest of the job's output is not kept\n"
    ).encode()


def append_log(
    session: Session,
    job_id: str,
    offset: int,
    data: bytes,
    max_bytes: int | None = None,
    stderr: Sequence[Range] = (),
) -> int:
    """Append ``data`` at byte ``offset``, ``stderr`` naming the ranges of it (relative to
    ``offset``; sorted and disjoint, see :func:`log_ranges.parse`) the job's stderr wrote; bytes
    already stored at their offset (a retry) are not stored again.

    A log reaching ``max_bytes`` is cut there, with :func:`cut_mark` after the cut; from then on
    appends are answered as taken and store nothing (the runner goes on counting its offsets,
    so they are no longer the stored log's).

    Returns:
        The log's size after the append.
    """
    for _ in range(10):
        job = _locked(session, job_id)
        size = job.log_size
        if max_bytes is not None and size >= max_bytes:
            session.commit()
            return size  # cut: the rest goes nowhere
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
        kept = len(new)
        if max_bytes is not None and size + len(new) >= max_bytes:
            kept = max_bytes - size
            new = new[:kept] + cut_mark(max_bytes)
        # The ranges of what is stored: after what a retry repeats, before the cut.
        marked = log_ranges.window(stderr, size - offset, size - offset + kept)
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
            chunk = LogChunk(job_id=job_id, offset=size, data=new, at=utc_now())
            chunk.stderr = [list(r) for r in marked] or None
            session.add(chunk)
            session.commit()
        except (IntegrityError, OperationalError):
            session.rollback()
            continue
        return size + len(new)
    raise ConflictError(f"The log of job {job_id} is being written by too many at once; retry.")


def read_log(session: Session, job_id: str, offset: int = 0, limit: int = LOG_PAGE) -> bytes:
    """The log's bytes from ``offset``: at most ``limit`` of them, and never more than
    :data:`MAX_LOG_PAGE`, so a read holds a page of the log, however long it is."""
    return _read_log(session, job_id, offset, limit, None)


def read_log_marked(
    session: Session, job_id: str, offset: int = 0, limit: int = LOG_PAGE
) -> tuple[bytes, list[Range]]:
    """:func:`read_log`, and the ranges of what it read that the job's stderr wrote, in absolute
    offsets of the log."""
    stderr: list[Range] = []
    return _read_log(session, job_id, offset, limit, stderr), stderr


def _read_log(
    session: Session, job_id: str, offset: int, limit: int, stderr: list[Range] | None
) -> bytes:
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
        sa.select(LogChunk.offset, LogChunk.data, LogChunk.stderr)
        .where(LogChunk.job_id == job_id, LogChunk.offset >= first, LogChunk.offset < end)
        .order_by(LogChunk.offset)
    )
    parts = []
    for start_at, data, marked in session.execute(query):
        parts.append(data[max(offset - start_at, 0) : end - start_at])
        if stderr is not None and marked:
            for a, b in log_ranges.window(marked, offset - start_at, end - start_at):
                log_ranges.add(stderr, a + offset, b + offset)
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
