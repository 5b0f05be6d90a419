"""Sweeps: a job whose trials are jobs, run by the sweep controller in every server process.

A sweep is a job of kind ``sweep`` with its own MLflow run (the parent) and a row in
``flowyard_sweeps``; its search is an Optuna study in the workspace's database. Each trial is a
job submitted through :func:`jobs.submit`, tagged ``mlflow.parentRunId`` and holding its Optuna
trial number, so trials queue on their compute like any job.

The controller keeps no state of its own: each tick it reads the study and the trials' jobs and
does what is missing. A trial drawn but never submitted (the server died in between) is
submitted; a trial whose job ended is told to Optuna; a running trial's objective metric, read
from MLflow's store, is reported step by step to the sweep's pruner, which may stop it. One
server process at a time drives a sweep (a lease on its row), and the database refuses a second
job for one trial, so however servers die, restart or take over, no trial is lost or run twice.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from flowyard.errors import FlowyardError, InvalidRequestError, NotFoundError
from flowyard.schemas import ErrorInfo, JobStatus, JobSubmit, TrialOut
from flowyard.server import mlflow_internals
from flowyard.server.auth.tokens import Keys
from flowyard.server.db import studies
from flowyard.server.db.models import Compute, Job, Sweep, utc_now
from flowyard.server.services import computes, jobs, lifecycle, reruns, runs, search
from flowyard.server.settings import ServerSettings
from flowyard.sweepspec import SweepSpec

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)

# Trials kept queued beyond a compute's slots when no max_concurrent_trials is set: a freed slot
# then waits for the dispatcher alone, not for the controller to tell Optuna and draw.
QUEUED_AHEAD = 1
PARENT_TAG = "mlflow.parentRunId"
SWEEP_TAG = "flowyard.sweep"
TRIAL_TAG = "flowyard.sweep.trial"
BEST_TAG = "flowyard.sweep.best_trial"
# The parent's tags a trial does not inherit: its own name, and the workspace's own tags.
_NOT_INHERITED = ("mlflow.runName", PARENT_TAG, "flowyard.")


# --- submitting --------------------------------------------------------------------------------


def _check(session: Session, request: JobSubmit, spec: SweepSpec) -> None:
    target = computes.named_target(session, request.compute)
    if not target.starts_runners:
        raise InvalidRequestError(
            f"A sweep's trials need a compute whose runners the workspace starts; COMPUTE "
            f"{request.compute} runs on the submitting machine, so pick one of "
            f"{', '.join(n for n in computes.names(session) if n != computes.LOCAL) or 'none yet'}"
            " (create one with `flowyard compute create`)."
        )
    entry = request.options.entry_point_spec
    if entry is None:
        raise InvalidRequestError(
            "A sweep needs the entry point stored with its submission (options."
            "entry_point_spec); submit it with this version's client."
        )
    spec.check_types({name: p.type for name, p in entry.parameters.items()})


def submit(
    session: Session,
    request: JobSubmit,
    spec: SweepSpec,
    submitted_from: str,
    keys: Keys | None = None,
) -> Job:
    """Create the sweep: its job and MLflow run (with the parameters every trial shares) and its
    row. Checked first; its trials start at the controller's next tick. ``keys`` as for
    :func:`jobs.submit`."""
    _check(session, request, spec)
    shared = {k: v for k, v in request.parameters.items() if k not in spec.search_space}
    body = request.model_copy(
        update={"parameters": shared, "tags": {**request.tags, SWEEP_TAG: "parent"}}
    )
    sweep = Sweep(spec=spec, study_name="")
    job, _ = jobs.submit(session, body, submitted_from, keys, sweep=sweep)
    sweep.study_name = f"flowyard-sweep-{job.id}"
    session.commit()
    return job


# --- the controller ----------------------------------------------------------------------------


class SweepController:
    """The background thread of one server process that drives every sweep it holds."""

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        *,
        wake_dispatcher: Callable[[], None],
        changed: Callable[[str], None],
        keys: Keys | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        # Marks the trials' runs as submissions' (a run left without its trial job is settled).
        self.keys = keys
        self.wake_dispatcher = wake_dispatcher
        self.changed = changed
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweeps", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.release()

    def wake(self) -> None:
        """A trial ended or a sweep was submitted or canceled: act now, not at the next tick."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.tick()
            except Exception:
                log.exception("sweep controller tick failed; trying again")
            self._wake.wait(self.settings.dispatch_interval_s)

    def tick(self) -> None:
        with Session(self.engine) as session:
            open_sweeps = list(
                session.scalars(sa.select(Sweep.id).where(Sweep.settled_at.is_(None)))
            )
        for sweep_id in open_sweeps:
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    held, before = self._hold(session, sweep_id)
                    if held:
                        tick = _Tick(self, session, sweep_id)
                        if before not in (None, self.owner):
                            tick.note(
                                f"the sweep controller on {self.owner} took over from {before}"
                            )
                        tick.run()
            except Exception:
                log.exception("sweep %s: tick failed; trying again", sweep_id)

    def _hold(self, session: Session, sweep_id: str) -> tuple[bool, str | None]:
        """Take or renew the lease on the sweep: whether this process holds it now, and who
        held it before (a server that died or stopped, when another)."""
        before = session.scalar(sa.select(Sweep.lease_owner).where(Sweep.id == sweep_id))
        now = utc_now()
        taken = session.execute(
            sa.update(Sweep)
            .where(
                Sweep.id == sweep_id,
                sa.or_(
                    Sweep.lease_owner.is_(None),
                    Sweep.lease_owner == self.owner,
                    Sweep.lease_until < now,
                ),
            )
            .values(
                lease_owner=self.owner,
                lease_until=now + timedelta(seconds=self.settings.sweep_lease_s),
            )
            .execution_options(synchronize_session=False)
        )
        session.commit()
        return getattr(taken, "rowcount", 0) == 1, before

    def release(self) -> None:
        """Give up this process's leases (a clean stop): another process takes over at once."""
        try:
            with Session(self.engine) as session:
                session.execute(
                    sa.update(Sweep)
                    .where(Sweep.lease_owner == self.owner)
                    .values(lease_owner=None, lease_until=None)
                )
                session.commit()
        except Exception:
            log.exception("could not release the sweep leases")


class _Tick:
    """One pass over one sweep, in the order that never loses a trial: submit what was drawn
    and never submitted, tell Optuna what ended, stop or draw more, then prune what lags, keep
    the best on the parent's run and end the sweep once nothing of it is left running."""

    def __init__(self, controller: SweepController, session: Session, sweep_id: str) -> None:
        self.c = controller
        self.session = session
        sweep = session.get(Sweep, sweep_id)
        parent = session.get(Job, sweep_id)
        assert sweep is not None and parent is not None
        self.sweep, self.parent, self.spec = sweep, parent, sweep.spec
        self.study = search.study(
            studies.storage(controller.settings.db_url), sweep.study_name, self.spec
        )
        self.trials: dict[int, FrozenTrial] = {
            t.number: t for t in self.study.get_trials(deepcopy=False)
        }
        self._parent_run: tuple[dict[str, str], str] | None = None
        self.jobs: dict[int, Job] = {
            j.trial_number: j
            for j in session.scalars(sa.select(Job).where(Job.sweep_id == sweep_id))
            if j.trial_number is not None
        }

    # -- helpers ---------------------------------------------------------------------------

    def note(self, text: str) -> None:
        jobs.append_note(self.session, self.parent.id, text)
        self.c.changed(self.parent.id)

    def _state(self, number: int) -> Any:
        return self.trials[number].state

    def _running(self, number: int) -> bool:
        from optuna.trial import TrialState

        return bool(self._state(number) == TrialState.RUNNING)

    def _refresh(self) -> None:
        self.trials = {t.number: t for t in self.study.get_trials(deepcopy=False)}

    # -- the pass --------------------------------------------------------------------------

    def run(self) -> None:
        parent_final = JobStatus(self.parent.status).is_final
        if not parent_final and self.parent.status != JobStatus.RUNNING:
            lifecycle.move(
                self.session,
                self.parent,
                JobStatus.RUNNING,
                f"the sweep controller on {self.c.owner} started it",
                self.c.settings,
            )
        stop = self._stop_reason()
        for number in sorted(self.trials):
            if self._running(number) and number not in self.jobs:
                self._submit_drawn(number, stop)
        # A slot that a trial's end freed is filled first (what a sweep's pace hangs on); what
        # only the log and the parent's run show comes after.
        ended = [
            (number, job)
            for number, job in sorted(self.jobs.items())
            if number in self.trials and self._running(number) and JobStatus(job.status).is_final
        ]
        told = [self._settle(number, job) for number, job in ended]
        if ended:
            self._refresh()
        stop = stop or self._stop_reason()
        if stop is not None:
            self._cancel_trials(stop[0])
        elif not JobStatus(self.parent.status).is_final:
            self._draw()
        for text in told:
            self.note(text)
        if self.spec.early_termination is not None and stop is None:
            for number, job in sorted(self.jobs.items()):
                if job.status == JobStatus.RUNNING and self._running(number):
                    self._watch(number, job)
        self._best()
        self._end(stop)

    def _stop_reason(self) -> tuple[str, JobStatus | None] | None:
        """Why no more trials start, and the status the sweep ends with (None: it has one)."""
        from optuna.trial import TrialState

        status = JobStatus(self.parent.status)
        if status.is_final or self.parent.cancel_requested:
            return f"the sweep was {status if status.is_final else 'canceled'}", None
        limits = self.spec.limits
        failed = sum(1 for t in self.trials.values() if t.state == TrialState.FAIL)
        if limits.max_failed_trials is not None and failed >= limits.max_failed_trials:
            return (
                f"{failed} trials failed, as many as limits.max_failed_trials allows",
                JobStatus.FAILED,
            )
        started = self.parent.submitted_at
        if limits.timeout is not None and utc_now() - started > timedelta(seconds=limits.timeout):
            return f"the sweep's limits.timeout of {limits.timeout:g} s passed", JobStatus.COMPLETED
        return None

    def _submit_drawn(self, number: int, stop: tuple[str, JobStatus | None] | None) -> None:
        """A trial Optuna holds as drawn with no job yet (the server stopped in between)."""
        if stop is not None:
            self.study.tell(number, state=search.state("FAIL"), skip_if_finished=True)
            return
        # Parameters it has keep their values; any it lacks are drawn as they would have been.
        self.study.sampler = search.sampler(self.spec, number)
        trial = search.live_trial(self.study, self.trials[number])
        self._submit(number, search.suggest(trial, self.spec))

    def _submit(self, number: int, parameters: dict[str, str]) -> None:
        parent = self.parent
        spec = parent.options.entry_point_spec
        assert spec is not None
        resolved, command = reruns.with_parameters(spec, parent.parameters, parameters)
        if self._parent_run is None:
            self._parent_run = (
                mlflow_internals.run_tags(self.session, parent.id),
                mlflow_internals.run_name(self.session, parent.id) or parent.id[:8],
            )
        tags, name = self._parent_run
        request = JobSubmit(
            experiment_id=parent.experiment_id,
            snapshot_id=parent.snapshot_id,
            project_uri=parent.project_uri,
            entry_point=parent.entry_point,
            parameters=resolved,
            environment=parent.environment,
            options=replace(parent.options, command=command),
            compute=parent.compute,
            priority=parent.priority,
            max_retries=parent.max_retries,
            run_name=f"{name}-trial-{number}",
            user=parent.user,
            tags={
                **{k: v for k, v in tags.items() if not k.startswith(_NOT_INHERITED)},
                PARENT_TAG: parent.id,
                SWEEP_TAG: parent.id,
                TRIAL_TAG: str(number),
            },
        )
        try:
            job, _ = jobs.submit(
                self.session,
                request,
                f"sweep {parent.id} (trial {number})",
                self.c.keys,
                sealed_env=parent.secret_env,
                trial=(parent.id, number),
            )
        except IntegrityError:
            # Another controller submitted it first (its lease ran out mid-tick): it is there.
            self.session.rollback()
            return
        except FlowyardError as e:
            # What the workspace refuses now (the experiment deleted, the compute gone) fails
            # this trial, and the sweep goes on as its limits say.
            self.session.rollback()
            self.study.tell(number, state=search.state("FAIL"), skip_if_finished=True)
            self.note(f"trial {number} could not be submitted: {e.message}")
            return
        self.jobs[number] = job
        self.c.wake_dispatcher()
        shown = ", ".join(f"{k}={v}" for k, v in parameters.items())
        self.note(f"trial {number} (run {job.id}) queued: {shown}")

    def _settle(self, number: int, job: Job) -> str:
        """Tell Optuna how a trial whose job ended went; the line for the sweep's log."""
        status = JobStatus(job.status)
        metric = self.spec.objective.metric
        if status == JobStatus.COMPLETED:
            values = runs.metric_history(job.id, metric)
            if values:
                value = values[max(values)]
                self.study.tell(number, value, skip_if_finished=True)
                return f"trial {number} (run {job.id}) completed: {metric}={value:.6g}"
            reason = f"it completed without logging the objective metric {metric!r}"
        elif status == JobStatus.CANCELED and job.cancel_reason:
            # Pruned trials are told when stopped; any other cancel counts as a failure.
            reason = job.cancel_reason
        else:
            reason = (job.error or {}).get("message") or f"its job ended {status}"
        self.study.tell(number, state=search.state("FAIL"), skip_if_finished=True)
        return f"trial {number} (run {job.id}) failed: {reason}"

    def _watch(self, number: int, job: Job) -> None:
        """Report the trial's new steps of the objective metric; stop it where the policy says."""
        early = self.spec.early_termination
        assert early is not None
        frozen = self.trials[number]
        steps = runs.metric_history(job.id, self.spec.objective.metric)
        reported = dict(frozen.intermediate_values)
        new = [s for s in sorted(steps) if s not in reported and s >= 0]
        if not new:
            return
        trial = search.live_trial(self.study, frozen)
        for step in new:
            trial.report(steps[step], step)
            reported[step] = steps[step]
            due = step >= early.delay_evaluation and (
                (step - early.delay_evaluation) % early.evaluation_interval == 0
            )
            if due and trial.should_prune():
                reason = search.explain_prune(self.spec, self.study, reported, step)
                self.study.tell(number, state=search.state("PRUNED"), skip_if_finished=True)
                jobs.append_note(self.session, job.id, reason)
                jobs.cancel(self.session, job.id, self.c.settings, reason)
                self.note(f"trial {number} (run {job.id}) {reason}")
                return

    def _best(self) -> None:
        from optuna.trial import TrialState

        done = [t for t in self.trials.values() if t.state == TrialState.COMPLETE]
        if not done:
            return
        best = self.study.best_trial
        job = self.jobs.get(best.number)
        if job is None or self.sweep.best_trial_id == job.id:
            return
        assert best.value is not None
        self.sweep.best_trial_id, self.sweep.best_value = job.id, best.value
        self.session.commit()
        metric = self.spec.objective.metric
        runs.log(
            self.parent.id,
            metrics={f"best_{metric}": best.value},
            tags={BEST_TAG: job.id},
            step=len(done),
        )
        self.note(f"best so far: trial {best.number} (run {job.id}) with {metric}={best.value:.6g}")

    def _cancel_trials(self, reason: str) -> None:
        for job in self.jobs.values():
            if not JobStatus(job.status).is_final and not job.cancel_requested:
                jobs.cancel(
                    self.session, job.id, self.c.settings, f"{reason}; the sweep stopped it"
                )
                self.c.changed(job.id)
        self.c.wake_dispatcher()

    def _slots(self) -> int:
        """How many trials may be unfinished at once: max_concurrent_trials; without it, the
        compute's slots and one trial more, queued, which the dispatcher starts the moment a
        slot frees (the compute's slot limit still holds)."""
        limit = self.spec.limits.max_concurrent_trials
        if limit is not None:
            return limit
        compute = self.session.get(Compute, self.parent.compute)
        return (compute.max_concurrent_jobs if compute is not None else 1) + QUEUED_AHEAD

    def _draw(self) -> None:
        """Draw and submit new trials while the limits allow."""
        active = sum(1 for j in self.jobs.values() if not JobStatus(j.status).is_final)
        slots = self._slots()
        # The trials drawn here are queued: nothing below this tick reads their Optuna state.
        number = len(self.trials)
        while number < self.spec.limits.max_trials and active < slots:
            self.study.sampler = search.sampler(self.spec, number)
            trial = self.study.ask()
            self._submit(trial.number, search.suggest(trial, self.spec))
            number, active = trial.number + 1, active + 1

    def _end(self, stop: tuple[str, JobStatus | None] | None) -> None:
        """End the sweep once every trial has ended and been told; settle it when nothing of it
        is left to do."""
        if any(not JobStatus(j.status).is_final for j in self.jobs.values()):
            return
        if any(self._running(n) for n in self.trials):
            return
        if not JobStatus(self.parent.status).is_final:
            if stop is None and len(self.trials) < self.spec.limits.max_trials:
                return
            self._finish(stop)
        self.sweep.settled_at = utc_now()
        self.sweep.lease_owner = None
        self.session.commit()

    def _finish(self, stop: tuple[str, JobStatus | None] | None) -> None:
        from optuna.trial import TrialState

        counts = {s: sum(1 for t in self.trials.values() if t.state == s) for s in TrialState}
        summary = (
            f"{len(self.trials)} trials: {counts[TrialState.COMPLETE]} completed, "
            f"{counts[TrialState.PRUNED]} stopped early, {counts[TrialState.FAIL]} failed"
        )
        metric = self.spec.objective.metric
        best_id = self.sweep.best_trial_id
        if best_id is not None:
            best = self.study.best_trial
            job = self.jobs[best.number]
            searched = {k: v for k, v in job.parameters.items() if k in self.spec.search_space}
            runs.log(
                self.parent.id,
                params=searched,
                metrics={metric: float(self.sweep.best_value or 0.0)},
                tags={BEST_TAG: best_id, f"{BEST_TAG}_number": str(best.number)},
            )
            shown = ", ".join(f"{k}={v}" for k, v in searched.items())
            summary += (
                f"; best: trial {best.number} (run {best_id}) with {metric}="
                f"{self.sweep.best_value:.6g} ({shown})"
            )
        status = JobStatus.COMPLETED if best_id is not None else JobStatus.FAILED
        if stop is not None and stop[1] is not None and stop[1] == JobStatus.FAILED:
            status = JobStatus.FAILED
        reason = f"sweep ended ({stop[0]}): {summary}" if stop else f"sweep ended: {summary}"
        if best_id is None and stop is None:
            reason += f"; no trial logged {metric!r}"
        self.note(reason)
        lifecycle.move(
            self.session, self.parent, JobStatus.FINALIZING, "summing up", self.c.settings
        )
        lifecycle.move(
            self.session,
            self.parent,
            status,
            reason,
            self.c.settings,
            error=None
            if status == JobStatus.COMPLETED
            else ErrorInfo(type="SweepFailed", message=reason),
        )
        self.c.changed(self.parent.id)


def get(session: Session, sweep_id: str) -> tuple[Sweep, Job]:
    sweep = session.get(Sweep, sweep_id)
    if sweep is None:
        raise NotFoundError(
            f"Sweep {sweep_id} does not exist in this workspace; check the sweep's run id."
        )
    return sweep, jobs.get(session, sweep_id, events=True)


def trials(session: Session, settings: ServerSettings, sweep: Sweep) -> list[TrialOut]:
    """The sweep's trials with what Optuna holds of each, best first (by the objective's
    goal), then those without a value, by number."""
    study = search.study(studies.storage(settings.db_url), sweep.study_name, sweep.spec)
    found = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = session.scalars(
        sa.select(Job)
        .where(Job.sweep_id == sweep.id)
        .order_by(Job.trial_number)
        .options(selectinload(Job.events))
    ).all()
    out = []
    for row in rows:
        assert row.trial_number is not None
        frozen = found.get(row.trial_number)
        value = None
        if frozen is not None:
            value = frozen.value
            if value is None and frozen.intermediate_values:
                value = frozen.intermediate_values[max(frozen.intermediate_values)]
        out.append(
            TrialOut(
                number=row.trial_number,
                run_id=row.id,
                status=JobStatus(row.status),
                parameters={
                    k: v for k, v in row.parameters.items() if k in sweep.spec.search_space
                },
                value=value,
                state=frozen.state.name.lower() if frozen is not None else "running",
                last_step=frozen.last_step if frozen is not None else None,
                reason=row.events[-1].reason if row.events else None,
                submitted_at=row.submitted_at,
                ended_at=row.ended_at,
            )
        )
    sign = 1.0 if sweep.spec.objective.minimize else -1.0
    out.sort(
        key=lambda t: (
            t.value is None or math.isnan(t.value),
            sign * t.value if t.value is not None else 0.0,
            t.number,
        )
    )
    return out
