"""Retention policies: how long ended jobs are kept, per workspace and per experiment. The
garbage collection (scheduled, or `POST /gc`) applies them."""

from __future__ import annotations

from fastapi import APIRouter

from flowyard.schemas import RetentionOut, RetentionPolicy
from flowyard.server.services import retention
from flowyard.server.state import DbSession

router = APIRouter(prefix="/retention", tags=["workspace"])


@router.get("")
def get_policies(session: DbSession) -> RetentionOut:
    """The workspace's policy and each experiment's own."""
    return retention.shown(retention.load(session))


@router.put("")
def set_workspace_policy(body: RetentionPolicy, session: DbSession) -> RetentionOut:
    """Set the workspace's policy (no rule set: keep every job)."""
    return retention.set_policy(session, body)


@router.put("/experiments/{experiment_id}")
def set_experiment_policy(
    experiment_id: str, body: RetentionPolicy, session: DbSession
) -> RetentionOut:
    """Set an experiment's own policy, which replaces the workspace's for its jobs."""
    return retention.set_policy(session, body, experiment_id)


@router.delete("/experiments/{experiment_id}")
def clear_experiment_policy(experiment_id: str, session: DbSession) -> RetentionOut:
    """The experiment follows the workspace's policy again."""
    return retention.clear_policy(session, experiment_id)
