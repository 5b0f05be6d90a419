"""Experiments: MLflow owns them; Flowyard adds deleting one for good with its jobs."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from flowyard.schemas import DeletedOut
from flowyard.server.services import deletions
from flowyard.server.state import DbSession, State

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.delete("/{experiment_id}")
def delete_experiment(experiment_id: str, session: DbSession, state: State) -> DeletedOut:
    """Delete an experiment for good: its jobs, every run in it and their artifacts (409 while
    one of its jobs has not ended)."""
    return DeletedOut(**asdict(deletions.delete_experiment(session, experiment_id, state.settings)))
