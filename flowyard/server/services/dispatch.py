"""The dispatcher (queued jobs → compute targets) and the reconciler (settles jobs whose runner is
gone). Every server process runs both; claims are atomic, so each job starts exactly once."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from flowyard import defaults
from flowyard.compute.base import ExternalState, RunnerCommand
from flowyard.errors import ComputeUnavailableError, FlowyardError
from flowyard.schemas import ErrorInfo, JobStatus
from flowyard.server.auth.tokens import Keys
from flowyard.server.db.models import Compute, Job, utc_now
from flowyard.server.services import computes, jobs, lifecycle, replicas
from flowyard.server.settings import ServerSettings

log = logging.getLogger(__name__)

# Jobs one claim takes at most: short transactions, and a fair share between server processes.
CLAIM_BATCH = 50
# A canceled job whose runner does not stop it within this long is stopped through its compute.
CANCEL_GRACE_S = 30.0


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes for timezone-aware columns; they are stored in UTC.
    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def claim(session: Session, compute_name: str, limit: int = CLAIM_BATCH) -> list[Job]:
    """Move as many queued jobs of one compute to `preparing` as it has free slots (at most
    ``limit``) — highest priority first, then oldest. One transaction."""
    compute = session.get(Compute, compute_name)
    if compute is None:
        return []
    # Writing the compute's row first serialises dispatchers per compute: a row lock on
    # PostgreSQL, the database's write lock on SQLite. The slot count below is then exact.
    session.execute(
        sa.update(Compute).where(Compute.name == compute_name).values(updated_at=Compute.updated_at)
    )
    session.refresh(compute)
    active = (
        session.scalar(
            sa.select(sa.func.count()).where(Job.compute == compute_name, computes.takes_slot())
        )
        or 0
    )
    free = min(max(compute.max_concurrent_jobs - active, 0), limit)
    # Only as many as can start: the cost of a claim does not grow with the queue. Why the others
    # wait is worked out when someone looks (jobs.waiting_reason).
    taken = (
        list(
            session.scalars(
                sa.select(Job)
                .where(Job.compute == compute_name, Job.status == JobStatus.QUEUED)
                .order_by(Job.priority.desc(), Job.submitted_at, Job.id)
                .limit(free)
            )
        )
        if free
        else []
    )
    for slot, job in enumerate(taken, start=active + 1):
        # Queued to preparing keeps the run SCHEDULED: nothing to mirror after the commit.
        lifecycle.record(
            session,
            job,
            JobStatus.PREPARING,
            f"dispatched to {compute_name} (slot {slot} of "
            f"{compute.max_concurrent_jobs}), attempt {job.attempt}",
        )
        job.waiting_reason = None
        job.heartbeat_at = utc_now()  # the runner has until the heartbeat timeout to start
    session.commit()
    return taken


class Dispatcher:
    """The background thread of one server process."""

    def __init__(self, engine: Engine, settings: ServerSettings, keys: Keys) -> None:
        self.engine = engine
        self.settings = settings
        self.keys = keys
        self.private_paths = computes.private_paths(settings)
        # Recorded every reconcile: worked out once (on a wildcard address, a name lookup).
        self.replica_url = settings.reachable_url
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self.started_at = utc_now()
        # When this process last found its database back after an outage: silence until then is
        # the workspace's, not the runners' (their beats could not be stored).
        self.database_back_at = self.started_at
        self._database_down = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)

    def wake(self) -> None:
        """A job was queued here: dispatch now rather than at the next tick."""
        self._wake.set()

    def _loop(self) -> None:
        next_reconcile = next_health = next_repair = 0.0
        repair_interval = max(self.settings.reconcile_interval_s, self.settings.repair_after_s / 4)
        while not self._stop.is_set():
            try:
                if self._database_down:
                    self.database_back_at = utc_now()
                if time.monotonic() >= next_health:
                    next_health = time.monotonic() + self.settings.health_interval_s
                    self.check_health()
                if time.monotonic() >= next_reconcile:
                    self.reconcile()
                    next_reconcile = time.monotonic() + self.settings.reconcile_interval_s
                if time.monotonic() >= next_repair:
                    self.repair()
                    next_repair = time.monotonic() + repair_interval
                self.dispatch()
                self._database_down = False
            except DBAPIError as e:
                self._database_down = True
                log.warning("dispatcher cycle failed, the database is away (%s); trying again", e)
            except Exception:
                log.exception("dispatcher cycle failed; trying again")
            self._wake.wait(self.settings.dispatch_interval_s)
            self._wake.clear()

    def check_health(self) -> None:
        """Start a health check of every compute, each in a thread of its own: a compute that
        hangs delays neither dispatch nor the others' checks."""
        with Session(self.engine) as session:
            for compute in computes.all_computes(session):
                computes.health.refresh(computes.target(compute))

    # --- dispatch ----------------------------------------------------------------------------

    def dispatch(self) -> int:
        started = 0
        with Session(self.engine, expire_on_commit=False) as session:
            waiting = session.scalars(
                sa.select(Job.compute).where(Job.status == JobStatus.QUEUED).distinct()
            ).all()
            for name in waiting:
                for job in claim(session, name):
                    self._submit(session, job)
                    started += 1
        return started

    def _submit(self, session: Session, job: Job) -> None:
        compute = session.get(Compute, job.compute)
        assert compute is not None
        first = compute.workspace_url or self.settings.runners_url
        # The replicas seen within a heartbeat timeout: the ones a runner can hope to reach.
        since = utc_now() - timedelta(seconds=self.settings.heartbeat_timeout_s)
        command = RunnerCommand(
            job_id=job.id,
            attempt=job.attempt,
            workspace_url=first,
            resources=job.options.resources.asked(),
            token=self.keys.job_token(job.id, job.attempt),
            private_paths=self.private_paths,
            fallback_urls=replicas.fallbacks(first, replicas.seen_since(session, since)),
            container=job.environment.container,
        )
        try:
            external_id = computes.target(compute).submit(command)
        except ComputeUnavailableError as e:
            self.settle_lost(session, job, f"compute {compute.name} is unreachable: {e.message}")
            return
        except FlowyardError as e:
            self._fail(
                session,
                job,
                f"compute {compute.name} refused the job: {e.message}",
                ErrorInfo(type=type(e).__name__, message=e.message),
            )
            return
        session.execute(
            sa.update(Job)
            .where(Job.id == job.id, Job.attempt == job.attempt)
            .values(external_id=external_id)
        )
        session.commit()

    # --- reconcile ---------------------------------------------------------------------------

    def repair(self) -> None:
        """Settle what a server killed mid-request left half-done, once it is older than
        ``repair_after_s``: runs whose submission never committed its job, and final jobs whose
        runs were never ended."""
        cutoff = utc_now() - timedelta(seconds=self.settings.repair_after_s)
        with Session(self.engine, expire_on_commit=False) as session:
            for run_id in jobs.settle_orphans(session, self.keys, int(cutoff.timestamp() * 1000)):
                log.warning("settled run %s, whose submission did not complete", run_id)
            for job_id in lifecycle.repair_runs(session, self.settings, cutoff):
                log.warning("ended the run of job %s, which had ended without it", job_id)

    def reconcile(self) -> None:
        """Compare every active job with its compute and its runner's heartbeat; settle the
        ones whose runner is gone."""
        now = utc_now()
        with Session(self.engine, expire_on_commit=False) as session:
            replicas.record(session, self.replica_url)
            # A sweep has no runner to lose: the sweep controller settles it.
            active = list(session.scalars(sa.select(Job).where(computes.takes_slot())))
            for job in active:
                try:
                    self._reconcile_one(session, job, now)
                except ComputeUnavailableError as e:
                    log.warning("cannot reach compute %s: %s", job.compute, e.message)
                except FlowyardError as e:
                    log.warning("cannot reconcile job %s: %s", job.id, e.message)

    def _reconcile_one(self, session: Session, job: Job, now: datetime) -> None:
        target = computes.lookup(session, job.compute)
        state = None
        if target is not None and job.external_id:
            state = target.poll(job.external_id)
            if state == ExternalState.PENDING:
                # Waiting for the cluster's resources is not silence.
                job.heartbeat_at = now
                session.commit()
                return
        # Silence while this server or its database was down is the workspace's, not the
        # runner's: a restarted server, or one whose database is back, gives every runner a
        # whole timeout to get through again.
        beat = max(
            _aware(job.heartbeat_at) or _aware(job.submitted_at) or now,
            self.started_at,
            self.database_back_at,
        )
        timeout = self.settings.heartbeat_timeout_s
        if state == ExternalState.RUNNING:
            # The compute sees the runner alive: cut off from the workspace, it retries its
            # calls for this long before it gives up (and then exits, which settles the job).
            timeout += defaults.RUNNER_RETRY_FOR_S
        silent = now - beat > timedelta(seconds=timeout)
        if job.cancel_requested and (silent or now - beat > timedelta(seconds=CANCEL_GRACE_S)):
            if target is not None and job.external_id:
                target.cancel(job.external_id)
            fresh = session.get(Job, job.id)
            if fresh is not None and not JobStatus(fresh.status).is_final:
                lifecycle.move(
                    session,
                    fresh,
                    JobStatus.CANCELED,
                    f"{fresh.cancel_reason or jobs.CANCELED_BY_USER}; stopped through its compute",
                    self.settings,
                )
            return
        if state in (ExternalState.GONE, ExternalState.ENDED):
            self.settle_lost(
                session,
                job,
                f"runner {job.external_id} on {job.compute} ended without reporting a result",
            )
        elif silent:
            self.settle_lost(
                session, job, f"runner heartbeat lost at {beat.strftime('%Y-%m-%d %H:%M:%S')} UTC"
            )

    def settle_lost(self, session: Session, job: Job, reason: str) -> None:
        """An infrastructure failure: retry when MAX_RETRIES allows, else fail the job."""
        compute = session.get(Compute, job.compute)
        default = (compute.settings or {}).get("max_retries", 0) if compute else 0
        max_retries = int((default if job.max_retries is None else job.max_retries) or 0)
        target = computes.lookup(session, job.compute)
        if target is not None and target.starts_runners and job.attempt <= max_retries:
            jobs.requeue(
                session,
                job,
                f"{reason}; retrying (attempt {job.attempt + 1} of {max_retries + 1})",
                self.settings,
            )
            self.wake()
            return
        self._fail(session, job, reason, ErrorInfo(type="RunnerLost", message=reason))

    def _fail(self, session: Session, job: Job, reason: str, error: ErrorInfo) -> None:
        fresh = session.get(Job, job.id)
        if fresh is None or JobStatus(fresh.status).is_final:
            return
        jobs.append_note(session, fresh.id, reason)
        lifecycle.move(session, fresh, JobStatus.FAILED, reason, self.settings, error=error)
