"""What a server killed mid-request leaves half-done, the reconciler settles: a run whose
submission never committed its job is ended and deleted, a final job's open run is ended. A tag
anyone may write never gets a run deleted."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import RunStatus

from flowyard.client import Client
from flowyard.schemas import JobStatus, JobSubmit
from flowyard.snapshot import build_manifest, upload
from tests.factories import make_project
from tests.servers import FAST, Server, new_workspace

API = "/api/flowyard/v1"
REPAIR_AFTER_S = 2

# What a server killed between a submission's run and its job leaves (a marked run, no job), and
# between a job's end and its run's (a final job whose run is open): made with the workspace's
# own parts and key, as the killed server made them.
HALF_DONE = """
import sys, time
from pathlib import Path
from flowyard.server import mlflow_internals
from flowyard.server.auth.tokens import Keys, load_key_file
from flowyard.server.services import jobs, runs
from flowyard.server.workspace_folder import WorkspaceFolder
from flowyard.status import JobStatus

folder = WorkspaceFolder.load(Path(sys.argv[1]))
mlflow_internals.configure_server_app(folder.db_url, str(folder.artifacts))
keys = Keys(load_key_file(folder.path / "secret.key"))
experiment_id, completed = sys.argv[2], sys.argv[3]
start = int(time.time() * 1000)
mark = {jobs.SUBMITTED_TAG: keys.run_mark(experiment_id, start)}
print(runs.create_run(experiment_id, "someone", "orphan", mark, {}, start))
runs.set_run_status(completed, JobStatus.RUNNING)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = new_workspace(
        tmp_path_factory.mktemp("repair"),
        env={**FAST, "FLOWYARD_REPAIR_AFTER_S": str(REPAIR_AFTER_S)},
    )
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _untracked() -> Iterator[None]:
    yield
    mlflow.set_tracking_uri(None)


def _tracking(server: Server, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """MLflow's client on ``server``, with the token saved for it."""
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    mlflow.set_tracking_uri(server.url)
    return MlflowClient()


def _completed_job(server: Server, tmp_path: Path, experiment_id: str) -> tuple[str, str]:
    """A job taken to `completed` by its runner's own calls; its id and its runner's token."""
    project = make_project(tmp_path / "project", "print('done')\n")
    with Client(server.url) as client:
        job = client.submit_job(
            JobSubmit(
                experiment_id=experiment_id,
                snapshot_id=upload(client, build_manifest(project)).id,
                project_uri=".",
                entry_point="main",
                user="someone",
            )
        )
    headers = {"Authorization": f"Bearer {job.runner_token}"}
    with httpx.Client(base_url=server.url + API, headers=headers, timeout=30) as runner:
        answer = runner.post(f"/jobs/{job.id}/start", json={"host": "h", "pid": 1})
        assert answer.status_code == 200, answer.text
        answer = runner.post(f"/jobs/{job.id}/logs", params={"offset": 0}, content=b"done\n")
        assert answer.status_code == 200, answer.text
        for status in (JobStatus.RUNNING, JobStatus.FINALIZING, JobStatus.COMPLETED):
            body = {"status": status.value, "reason": "test"}
            answer = runner.post(f"/jobs/{job.id}/status", json=body)
            assert answer.status_code == 200, answer.text
    assert job.runner_token is not None
    return job.id, job.runner_token


def _wait_for(check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the reconciler did not settle it in time"
        time.sleep(0.3)


def test_the_reconciler_settles_half_done_submissions_and_ends(
    server: Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tracking = _tracking(server, monkeypatch)
    experiment = tracking.create_experiment("repair")
    completed, _ = _completed_job(server, tmp_path, experiment)
    assert tracking.get_run(completed).info.status == "FINISHED"
    made = subprocess.run(
        [sys.executable, "-c", HALF_DONE, str(server.cwd / "ws"), experiment, completed],
        capture_output=True,
        text=True,
        check=True,
    )
    orphan = made.stdout.strip().splitlines()[-1]
    # (The completed job's run may be ended again already: the reconciler runs every second.)
    # A run anyone may tag as a submission's, with a mark copied from a real one: not settled.
    mark = tracking.get_run(completed).data.tags["flowyard.submitted"]
    forged = tracking.create_run(experiment, tags={"flowyard.submitted": mark}).info.run_id
    plain = tracking.create_run(experiment).info.run_id

    _wait_for(lambda: tracking.get_run(orphan).info.lifecycle_stage == "deleted")
    run = tracking.get_run(orphan)
    assert run.info.status == RunStatus.to_string(RunStatus.FAILED)
    assert "did not complete" in run.data.tags["flowyard.orphan"]
    _wait_for(lambda: tracking.get_run(completed).info.status == "FINISHED")
    for kept in (forged, plain):
        assert tracking.get_run(kept).info.lifecycle_stage == "active"
        assert tracking.get_run(kept).info.status == "RUNNING"
    # The run ended again has its log, whole.
    logs = [f.path for f in tracking.list_artifacts(completed, "logs")]
    assert logs == ["logs/std_log.txt"]
