"""Two replicas on one PostgreSQL database: a runner is given every replica, and when the one that
dispatched it dies mid-job, it goes on through another; the job ends as its entry point earned,
with every log line once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import create_compute, final_job, make_project
from tests.servers import FAST, Server

pytestmark = pytest.mark.postgres

LINES = 60


def _replica(db_url: str, folder: Path, name: str) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    return Server(
        args=["--db-url", db_url, "--artifacts", str(folder.parent / "artifacts"), "--name", name],
        cwd=folder,
        # Heartbeats missed while a replica is down must not count the runner lost.
        env={**FAST, "FLOWYARD_HEARTBEAT_TIMEOUT_S": "60", "XDG_CACHE_HOME": str(folder / "c")},
    ).start()


@pytest.fixture
def replicas(postgres_empty_db: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    first = _replica(postgres_empty_db, tmp_path / "a", "replicas")
    second = _replica(postgres_empty_db, tmp_path / "b", "replicas")
    yield first, second
    for server in (first, second):
        server.stop()


def test_a_runner_goes_on_through_another_replica_when_its_own_dies(
    replicas: tuple[Server, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = replicas
    # One database, one owner: the token the first replica made works on both.
    monkeypatch.setenv("FLOWYARD_TOKEN", str(first.token))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", str(first.token))
    with Client(first.url) as client:
        deadline = time.monotonic() + 30
        while set(client.info()["replicas"]) != {first.url, second.url}:
            assert time.monotonic() < deadline, client.info()["replicas"]
            time.sleep(0.2)
    create_compute(first, "pool")
    project = make_project(
        tmp_path / "p",
        f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n"
        "    time.sleep(0.1)\n",
    )
    mlflow.set_tracking_uri(first.url)
    try:
        mlflow.set_experiment("replicas")
        run = mlflow.projects.run(
            str(project),
            backend="flowyard",
            synchronous=False,
            backend_config={"COMPUTE": "pool", "USE_CONDA": False},
        )
    finally:
        mlflow.set_tracking_uri(None)
    with Client(second.url) as client:
        deadline = time.monotonic() + 60
        while b"line 5\n" not in client.read_log(run.run_id)[0]:
            assert time.monotonic() < deadline, "the job never started logging"
            time.sleep(0.1)
        first.kill()
        job = final_job(client, run.run_id)
        log = client.read_log(run.run_id)[0].decode().splitlines()
    assert job.status == JobStatus.COMPLETED, job
    assert job.attempt == 1
    assert [ln for ln in log if ln.startswith("line ")] == [f"line {i}" for i in range(LINES)]
