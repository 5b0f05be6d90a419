"""A job's run ends when the job does, with the job's status: the entry point's own
``with mlflow.start_run()`` (which resumes the job's run) cannot end it first, FINISHED before the
job's outputs are uploaded, or FINISHED where the job fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard import Workspace
from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import make_project
from tests.servers import Server

LOCAL = {"USE_CONDA": False}

# Leaves its `with` block (which asks MLflow to end the job's run FINISHED), says so in a file,
# then waits at a gate before writing its outputs.
ENDS_ITS_RUN_EARLY = """\
import os, sys, time
import mlflow

left, gate = sys.argv[1:3]
with mlflow.start_run():
    mlflow.log_metric("loss", 0.5)
open(left, "w").write("left")
while not os.path.exists(gate):
    time.sleep(0.05)
os.makedirs("outputs", exist_ok=True)
open("outputs/done.txt", "w").write("done")
"""

# Catches its own error, so its `with` block ends the run FINISHED; then exits with an error.
HIDES_ITS_FAILURE = """\
import sys
import mlflow

with mlflow.start_run():
    try:
        raise ValueError("bad data")
    except ValueError:
        pass
sys.exit(3)
"""


@pytest.fixture
def tracking(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """MLflow pointed at the workspace in a fresh experiment; yields the experiment's id."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # The saved owner token of this workspace, not one an earlier test's workspace left exported.
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    yield mlflow.set_experiment(f"run-status-{tmp_path.name}").experiment_id
    mlflow.set_tracking_uri(None)


def _run(project: Path, experiment_id: str, parameters: dict[str, str]) -> Any:
    return mlflow.projects.run(
        uri=str(project),
        parameters=parameters,
        backend="flowyard",
        backend_config=LOCAL,
        experiment_id=experiment_id,
    )


def test_the_entry_points_own_run_stays_running_until_the_job_ends(
    sqlite_server: Server, tracking: str, tmp_path: Path
) -> None:
    left, gate = tmp_path / "left", tmp_path / "gate"
    project = make_project(
        tmp_path / "project",
        ENDS_ITS_RUN_EARLY,
        parameters="{left: string, gate: string}",
        command="python main.py {left} {gate}",
    )
    submitted: list[Any] = []
    runner = threading.Thread(
        target=lambda: submitted.append(
            _run(project, tracking, {"left": str(left), "gate": str(gate)})
        )
    )
    runner.start()
    try:
        deadline = time.monotonic() + 180
        while not left.exists():
            assert runner.is_alive() and time.monotonic() < deadline, "the job never left its run"
            time.sleep(0.1)
        client = MlflowClient()
        (run,) = client.search_runs([tracking])
        assert run.data.metrics["loss"] == 0.5
        assert (run.info.status, run.info.end_time) == ("RUNNING", None)
    finally:
        gate.touch()
        runner.join(180)
    (done,) = submitted
    with Client(sqlite_server.url) as api:
        job = api.get_job(done.run_id)
    assert job.status == JobStatus.COMPLETED, job.events
    assert job.ended_at is not None
    run = client.get_run(done.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.end_time >= int(job.ended_at.timestamp() * 1000) - 1
    assert "outputs/done.txt" in {a.path for a in client.list_artifacts(done.run_id, "outputs")}


def test_a_job_that_hides_its_failure_from_mlflow_ends_failed(
    sqlite_server: Server, tracking: str, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "project", HIDES_ITS_FAILURE, parameters="{}", command="python main.py"
    )
    with pytest.raises(ExecutionException, match="failed"):
        _run(project, tracking, {})
    (run,) = MlflowClient().search_runs([tracking])
    with Client(sqlite_server.url) as api:
        job = api.get_job(run.info.run_id)
    assert job.status == JobStatus.FAILED
    assert run.info.status == "FAILED"
