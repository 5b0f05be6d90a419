"""Sweeps: submit one, see its trials sorted by the objective. A sweep is a job too: cancel it,
follow its log and wait for it with the jobs' routes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from flowyard.schemas import JobOut, SweepOut, SweepSubmit
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
    job = sweeps.submit(session, job_body, spec, client, keys=state.keys)
    state.sweeps.wake()
    return job_out(job)


@router.get("/{sweep_id}")
def get_sweep(sweep_id: str, session: DbSession, state: State) -> SweepOut:
    """The sweep, its spec and its trials, best first."""
    sweep, job = sweeps.get(session, sweep_id)
    return SweepOut(
        job=job_out(job, with_events=True),
        spec=sweep.spec.to_json(),
        trials=sweeps.trials(session, state.settings, sweep),
        best_trial_id=sweep.best_trial_id,
        best_value=sweep.best_value,
    )
