"""Jobs: submit, watch, cancel; and the calls a runner makes while it runs one."""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import datetime

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard import log_ranges
from flowyard.schemas import (
    INT32_MAX,
    INT32_MIN,
    DeletedOut,
    Heartbeat,
    JobList,
    JobOut,
    JobStatus,
    JobSubmit,
    LogAppended,
    RunnerStart,
    StatusUpdate,
)
from flowyard.server.db.models import Job
from flowyard.server.middleware.auth import principal_of
from flowyard.server.services import computes, deletions, jobs, reruns, watch
from flowyard.server.state import DbSession, State

router = APIRouter(prefix="/jobs", tags=["jobs"])

# Log offsets are BIGINT in the database; past this, a query would overflow it.
MAX_OFFSET = 2**62
# The longest `stderr` parameter of a log append: MAX_RANGES ranges of two 12-digit offsets.
MAX_STDERR_PARAM = log_ranges.MAX_RANGES * 26
# The longest a log read waits for news: well under any client's request timeout.
MAX_LOG_WAIT_S = 20.0


# JobOut's fields that are not the job row's columns as they are. The row's `secret_env` holds
# sealed values, which no answer carries: JobOut's is for the runner's start alone, decrypted.
_NOT_COLUMNS = frozenset(
    ("run_id", "events", "runner_token", "secret_env", "secret_env_dropped", "secret_env_names")
)


def job_out(job: Job, *, with_events: bool = False, waiting: str | None = None) -> JobOut:
    return JobOut.model_validate(
        {
            **{c: getattr(job, c) for c in JobOut.model_fields if c not in _NOT_COLUMNS},
            "secret_env_names": sorted(job.secret_env),
            "waiting_reason": waiting or job.waiting_reason,
            "run_id": job.id,
            "events": [
                {
                    "at": e.at,
                    "from_status": e.from_status,
                    "to_status": e.to_status,
                    "reason": e.reason,
                }
                for e in (job.events if with_events else [])
            ],
        }
    )


def _starts_runners(session: Session, job: Job) -> bool:
    """Whether the workspace starts the runners of ``job``'s compute (and so queues its jobs)."""
    target = computes.lookup(session, job.compute)
    return target is not None and target.starts_runners


@router.post("", status_code=201)
def submit(body: JobSubmit, request: Request, session: DbSession, state: State) -> JobOut:
    client = request.client.host if request.client else "an unknown host"
    if state.settings.auth:
        # Who submitted is who the token says, not what the client claims.
        body = body.model_copy(update={"user": principal_of(request).user})
    job, created = jobs.submit(session, body, submitted_from=client, keys=state.keys)
    out = job_out(job)
    if _starts_runners(session, job):
        if created:
            state.dispatcher.wake()
    elif not JobStatus(job.status).is_final:
        # The submitter starts this job's runner, which acts with this token.
        out.runner_token = state.keys.job_token(job.id, job.attempt)
    return out


@router.get("")
def list_jobs(
    session: DbSession,
    status: JobStatus | None = None,
    experiment_id: str | None = None,
    compute: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> JobList:
    found = jobs.list_jobs(
        session, status=status, experiment_id=experiment_id, compute=compute, limit=limit
    )
    return JobList(jobs=[job_out(j) for j in found])


@router.delete("")
def delete_jobs(
    session: DbSession,
    state: State,
    status: JobStatus | None = None,
    experiment_id: str | None = None,
    compute: str | None = None,
    user: str | None = None,
    ended_before: datetime | None = None,
) -> DeletedOut:
    """Delete for good every ended job the filter matches (at least one filter), with its run,
    artifacts and log; the answer names the matching jobs left because they have not ended."""
    wanted = deletions.JobFilter(status, experiment_id, compute, user, ended_before)
    return DeletedOut(**asdict(deletions.delete_jobs(session, wanted, state.settings)))


@router.delete("/{job_id}")
def delete_job(job_id: str, session: DbSession, state: State) -> DeletedOut:
    """Delete an ended job for good: its MLflow run and artifacts, its log and events (409 for
    a job that has not ended: cancel it first)."""
    return DeletedOut(**asdict(deletions.delete_job(session, job_id, state.settings)))


@router.get("/{job_id}")
def get_job(job_id: str, session: DbSession) -> JobOut:
    job = jobs.get(session, job_id, events=True)
    return job_out(job, with_events=True, waiting=jobs.waiting_reason(session, job))


@router.post("/{job_id}/cancel")
def cancel(job_id: str, request: Request, session: DbSession, state: State) -> JobOut:
    # Who asked, in the job's timeline and error box ("canceled by alice").
    who = principal_of(request).user if state.settings.auth else None
    reason = f"canceled by {who}" if who else jobs.CANCELED_BY_USER
    job = jobs.cancel(session, job_id, state.settings, reason)
    state.watch.changed(job_id)
    state.dispatcher.wake()  # a canceled queued job may let another move up
    state.sweeps.wake()  # a canceled sweep stops its trials
    return job_out(job)


class Rerun(BaseModel):
    """Parameters to change for a re-run; the others keep the old job's values. Secret ENV_VARS
    to set, sealed like a submit's: the old job's stay with the user who submitted it. The run
    name (default: the original's, "(rerun N)"), compute, experiment, priority and plain
    ENV_VARS (all of them) may change; left out, they are the old job's."""

    model_config = ConfigDict(extra="forbid")
    parameters: dict[str, str] = {}
    secret_env: dict[str, str] = {}
    run_name: str | None = Field(default=None, max_length=250)
    compute: str | None = None
    experiment_id: str | None = None
    priority: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    env_vars: dict[str, str] | None = None


@router.post("/{job_id}/rerun", status_code=201)
def rerun(job_id: str, body: Rerun, request: Request, session: DbSession, state: State) -> JobOut:
    """A new job from this one's snapshot and compute, with edited parameters. Run by another
    user than the first submitter, it runs without the first one's secret ENV_VARS, and the
    answer names them (``secret_env_dropped``)."""
    client = request.client.host if request.client else "an unknown host"
    job, dropped = reruns.rerun(
        session,
        job_id,
        body.parameters,
        f"{client} (re-run of {job_id})",
        state.settings,
        user=principal_of(request).user if state.settings.auth else None,
        secret_env=body.secret_env,
        keys=state.keys,
        run_name=(body.run_name or "").strip() or None,
        compute=body.compute or None,
        experiment_id=body.experiment_id or None,
        priority=body.priority,
        env_vars=body.env_vars,
    )
    if job.status == JobStatus.QUEUED:
        state.dispatcher.wake()
    out = job_out(job)
    out.secret_env_dropped = dropped or None
    return out


@router.post("/{job_id}/start")
def start(
    job_id: str, body: RunnerStart, request: Request, session: DbSession, state: State
) -> JobOut:
    job = jobs.start(session, job_id, body.host, body.pid, body.instance)
    out = job_out(job)
    principal = principal_of(request)
    # The job's secrets go to its own runner only (or anyone, where auth is off).
    if principal.job is not None or not state.settings.auth:
        out.secret_env = {
            name: state.keys.decrypt(sealed) for name, sealed in job.secret_env.items()
        }
    return out


@router.post("/{job_id}/status")
def update_status(job_id: str, body: StatusUpdate, session: DbSession, state: State) -> JobOut:
    job = jobs.update_status(session, job_id, body, state.settings)
    state.watch.changed(job_id)
    if body.status.is_final and _starts_runners(session, job):
        state.dispatcher.wake()  # a slot is free: the next queued job need not wait for a tick
    if body.status.is_final and job.sweep_id is not None:
        state.sweeps.wake()  # its sweep tells Optuna and draws the next trial
    return job_out(job)


@router.post("/{job_id}/heartbeat")
def heartbeat(job_id: str, session: DbSession) -> Heartbeat:
    job = jobs.heartbeat(session, job_id)
    return Heartbeat(status=JobStatus(job.status), cancel_requested=job.cancel_requested)


@router.post("/{job_id}/logs")
async def append_log(
    job_id: str,
    request: Request,
    session: DbSession,
    state: State,
    offset: int = Query(ge=0, le=MAX_OFFSET),
    # Printable ASCII only: at most 3 bytes a character once in the URL, which then fits.
    stderr: str = Query("", max_length=MAX_STDERR_PARAM, pattern=r"^[ -~]*$"),
) -> LogAppended:
    """Append the raw body at ``offset``; 413 past the server's ``max_log_append_kib``. A log
    that reaches the server's ``max_log_mb`` is cut there, the cut marked in it. ``stderr``
    names the byte ranges of the body the job's stderr wrote (``0-12,40-95``; 400 for ranges
    out of the body, out of order, overlapping, or too many)."""
    data = await request.body()
    ranges = log_ranges.parse(stderr, len(data))
    cap = int(state.settings.max_log_mb * 1e6)
    size = await run_in_threadpool(jobs.append_log, session, job_id, offset, data, cap, ranges)
    state.watch.changed(job_id)
    return LogAppended(size=size)


def _log_from(engine: Engine, job_id: str, offset: int, limit: int) -> tuple[bytes, Job]:
    # A session of its own for each look: a waiting request holds no connection, and each look
    # reads what other server processes have committed since.
    with Session(engine, expire_on_commit=False) as session:
        data = jobs.read_log(session, job_id, offset, limit)
        return data, jobs.get(session, job_id)


@router.get("/{job_id}/logs")
async def read_log(
    job_id: str,
    state: State,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(jobs.LOG_PAGE, ge=1, le=MAX_OFFSET),
    wait: float = Query(0, ge=0, le=MAX_LOG_WAIT_S),
) -> Response:
    """A page of the log from ``offset``: ``limit`` bytes at most (1 MiB unless asked; a bigger
    ask gets 8 MiB at most). Headers tell the offset the next page starts at, the log's full
    size and the job's status, so a follower knows when it has everything. With ``wait``, a read
    that finds nothing new waits up to that many seconds for log past ``offset``, a change of
    status, or the job's end."""
    deadline = time.monotonic() + wait
    async with state.watch.watching(job_id) as waiter:
        data, job = await run_in_threadpool(_log_from, state.engine, job_id, offset, limit)
        first_status = job.status
        while not data and not JobStatus(job.status).is_final and job.status == first_status:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await waiter.sleep(min(left, watch.RECHECK_S))
            data, job = await run_in_threadpool(_log_from, state.engine, job_id, offset, limit)
    return Response(
        content=data,
        media_type="application/octet-stream",
        headers={
            "X-Flowyard-Job-Status": job.status,
            "X-Flowyard-Log-Size": str(job.log_size),
            "X-Flowyard-Next-Offset": str(offset + len(data)),
        },
    )
