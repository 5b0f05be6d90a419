"""Fixtures for compute tests: a workspace server with short timeouts, and job helpers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import mlflow
import pytest

from flowyard.client import Client
from flowyard.schemas import JobOut, JobStatus
from tests.conftest import Server, new_workspace

# Short timeouts, so a lost runner is noticed in seconds rather than a minute.
FAST = {
    "FLOWYARD_HEARTBEAT_TIMEOUT_S": "4",
    "FLOWYARD_RECONCILE_INTERVAL_S": "1",
    "FLOWYARD_DISPATCH_INTERVAL_S": "0.2",
}


def fast_workspace(project: Path, env: dict[str, str] | None = None) -> Server:
    """A new workspace in ``project``, served with short timeouts (and ``env``) and its own
    runner cache."""
    return new_workspace(
        project, env={**FAST, "XDG_CACHE_HOME": str(project / "cache"), **(env or {})}
    )


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    """The MLflow client pointed at the module's ``workspace``, in a fresh experiment."""
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"compute-{tmp_path.name}")
    yield Client(workspace.url)
    mlflow.set_tracking_uri(None)


def final_job(client: Client, run_id: str, timeout: float = 180) -> JobOut:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(run_id)
        if job.status.is_final:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {run_id} still {client.get_job(run_id).status} after {timeout} s")


def event_at(job: JobOut, status: JobStatus) -> datetime:
    return next(e.at for e in job.events if e.to_status == status)
