"""Sweeps: submit one, see its trials sorted by the objective. A sweep is a job too: cancel it,
follow its log and wait for it with the jobs' routes."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request
from sqlalchemy.orm import selectinload

from flowyard.schemas import JobOut, JobStatus, SweepOut, SweepSubmit, TrialOut
from flowyard.server.db.models import Job
from flowyard.server.middleware.auth import principal_of
from flowyard.server.routers.jobs import job_out
from flowyard.server.services import sweeps
from flowyard.server.state import DbSession, State
from flowyard.sweepspec import SweepSpec

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.post("", status_code=201)
def submit(body: SweepSubmit, request: Request, session: DbSession, state: State) -> JobOut:
    """Create the sweep's job and run; its trials start on its compute at once."""
    spec = SweepSpec.parse(body.spec)
    job_body = body.job
    if state.settings.auth:
        # Who submitted is who the token says, not what the client claims.
        job_body = job_body.model_copy(update={"user": principal_of(request).user})
    client = request.client.host if request.client else "an unknown host"
    job = sweeps.submit(session, job_body, spec, client, seal=state.keys.encrypt)
    state.sweeps.wake()
    return job_out(job)


@router.get("/{sweep_id}")
def get_sweep(sweep_id: str, session: DbSession, state: State) -> SweepOut:
    sweep, job = sweeps.get(session, sweep_id)
    found = sweeps.study_trials(state.settings, sweep)
    rows = session.scalars(sweeps.trials_query(sweep_id).options(selectinload(Job.events))).all()
    trials = []
    for row in rows:
        assert row.trial_number is not None
        frozen = found.get(row.trial_number)
        value = None
        if frozen is not None:
            value = frozen.value
            if value is None and frozen.intermediate_values:
                value = frozen.intermediate_values[max(frozen.intermediate_values)]
        trials.append(
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
    trials.sort(
        key=lambda t: (
            t.value is None or math.isnan(t.value),
            sign * t.value if t.value is not None else 0.0,
            t.number,
        )
    )
    return SweepOut(
        job=job_out(job, with_events=True),
        spec=sweep.spec.to_json(),
        trials=trials,
        best_trial_id=sweep.best_trial_id,
        best_value=sweep.best_value,
    )
