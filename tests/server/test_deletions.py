"""Deleting jobs and experiments for good, end to end: real jobs through the MLflow plugin, then
the files and bytes in the workspace's artifact store and the rows in its database counted
before and after."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flowyard.client import Client
from flowyard.errors import ConflictError, InvalidRequestError, NotFoundError
from flowyard.schemas import JobStatus
from tests.factories import final_job, make_project, unstarted_job
from tests.servers import Server, auth_headers, fast_workspace, run_cli, tracking

LOCAL = {"USE_CONDA": False, "STREAM_OUTPUT": False}
# A job that writes outputs (artifacts), a log, a metric and a file of its own as an artifact.
WRITES = """\
import os, sys
import mlflow
os.makedirs("outputs", exist_ok=True)
with open("outputs/weights.bin", "wb") as f:
    f.write(os.urandom(200_000))
with open("note.txt", "w") as f:
    f.write("x" * 5000)
mlflow.log_artifact("note.txt")
mlflow.log_metric("loss", 0.5)
print("log line " * 2000)
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tracking(fast_workspace(tmp_path_factory.mktemp("deletions"))) as server:
        yield server


@pytest.fixture
def client(workspace: Server) -> Iterator[Client]:
    with Client(workspace.url) as c:
        yield c


def _artifacts(workspace: Server) -> Path:
    return workspace.cwd / "ws" / "artifacts"


def _tracking(workspace: Server) -> MlflowClient:
    return MlflowClient(workspace.url)


def _count(folder: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            files += 1
            size += os.lstat(os.path.join(root, name)).st_size
    return files, size


def _run_jobs(workspace: Server, project: Path, experiment: str, count: int) -> list[str]:
    mlflow.set_experiment(experiment)
    ids = []
    for _ in range(count):
        submitted = mlflow.projects.run(
            uri=str(project), backend="flowyard", backend_config=LOCAL, synchronous=True
        )
        ids.append(submitted.run_id)
    return ids


def _count_rows(workspace: Server, job_id: str) -> dict[str, int]:
    with sqlite3.connect(workspace.cwd / "ws" / "flowyard.db") as db:
        return {
            table: int(
                db.execute(f"SELECT count(*) FROM {table} WHERE {col} = ?", (job_id,)).fetchone()[0]
            )
            for table, col in (
                ("flowyard_jobs", "id"),
                ("flowyard_log_chunks", "job_id"),
                ("flowyard_job_events", "job_id"),
                ("runs", "run_uuid"),
                ("metrics", "run_uuid"),
                ("params", "run_uuid"),
                ("tags", "run_uuid"),
            )
        }


def test_deleting_a_job_frees_its_artifacts_log_and_rows(
    workspace: Server, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace.cwd / "cache"))
    project = make_project(tmp_path / "p", WRITES, parameters="{}", command="python main.py")
    kept, gone = _run_jobs(workspace, project, "deletions-one", 2)
    job = client.get_job(gone)
    assert job.status == JobStatus.COMPLETED
    run_folder = _artifacts(workspace) / job.experiment_id / gone
    files_before, bytes_before = _count(_artifacts(workspace))
    run_files, run_bytes = _count(run_folder)
    # outputs/weights.bin, note.txt, logs/std_log.txt (and whatever MLflow adds)
    assert run_files >= 3 and run_bytes > 200_000
    rows = _count_rows(workspace, gone)
    assert all(rows[t] > 0 for t in ("flowyard_jobs", "flowyard_log_chunks", "runs", "metrics"))

    done = client.delete_job(gone)

    assert done.job_ids == [gone] and done.runs == 1
    assert (done.artifact_files, done.artifact_bytes) == (run_files, run_bytes)
    assert done.log_bytes == job.log_size > 18_000
    assert _count(_artifacts(workspace)) == (files_before - run_files, bytes_before - run_bytes)
    assert not run_folder.exists()
    assert set(_count_rows(workspace, gone).values()) == {0}
    with pytest.raises(NotFoundError):
        client.get_job(gone)
    with pytest.raises(MlflowException, match=r"not found|RESOURCE_DOES_NOT_EXIST"):
        _tracking(workspace).get_run(gone)
    # The other job of the experiment is untouched.
    assert client.get_job(kept).status == JobStatus.COMPLETED
    assert _count(_artifacts(workspace) / job.experiment_id / kept)[0] >= 3
    with pytest.raises(NotFoundError):
        client.delete_job(gone)


def test_a_job_that_has_not_ended_is_refused_and_kept(workspace: Server, client: Client) -> None:
    job_id, _token = unstarted_job(workspace.url, auth_headers(workspace))
    with pytest.raises(ConflictError, match="cancel it first"):
        client.delete_job(job_id)
    assert client.get_job(job_id).status == JobStatus.PREPARING
    client.cancel_job(job_id)
    assert final_job(client, job_id).status == JobStatus.CANCELED
    assert client.delete_job(job_id).job_ids == [job_id]


def test_deleting_by_filter_takes_ended_jobs_and_names_the_others(
    workspace: Server, client: Client
) -> None:
    ended = [unstarted_job(workspace.url, auth_headers(workspace))[0] for _ in range(3)]
    for job_id in ended:
        client.cancel_job(job_id)
    live, _token = unstarted_job(workspace.url, auth_headers(workspace))
    with pytest.raises(InvalidRequestError, match="needs a filter"):
        client.delete_jobs()
    with pytest.raises(InvalidRequestError, match="have not ended"):
        client.delete_jobs(status=JobStatus.RUNNING)

    done = client.delete_jobs(experiment_id="0")

    assert set(ended) <= set(done.job_ids)
    assert live in done.left_active and live not in done.job_ids
    assert client.get_job(live).status == JobStatus.PREPARING
    for job_id in ended:
        with pytest.raises(NotFoundError):
            client.get_job(job_id)
    client.cancel_job(live)


def test_deleting_an_experiment_frees_every_run_in_it(
    workspace: Server, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(workspace.cwd / "cache"))
    project = make_project(tmp_path / "p", WRITES, parameters="{}", command="python main.py")
    job_ids = _run_jobs(workspace, project, "deletions-experiment", 2)
    experiment_id = client.get_job(job_ids[0]).experiment_id
    tracking = _tracking(workspace)
    # A run that is no job's, with an artifact of its own.
    by_hand = tracking.create_run(experiment_id)
    (tmp_path / "a.txt").write_text("by hand")
    tracking.log_artifact(by_hand.info.run_id, str(tmp_path / "a.txt"))
    folder = _artifacts(workspace) / experiment_id
    files, size = _count(folder)
    assert files >= 7

    with pytest.raises(ConflictError, match="default experiment"):
        client.delete_experiment("0")
    done = client.delete_experiment(experiment_id)

    assert sorted(done.job_ids) == sorted(job_ids) and done.runs == 3
    assert (done.artifact_files, done.artifact_bytes) == (files, size)
    assert not folder.exists()
    with pytest.raises(MlflowException):
        tracking.get_experiment(experiment_id)
    # Its name is free again: a new experiment may take it.
    assert tracking.create_experiment("deletions-experiment")
    with pytest.raises(NotFoundError, match="does not exist"):
        client.delete_experiment("987654")


def test_cli_asks_before_deleting(workspace: Server, client: Client) -> None:
    job_id, _token = unstarted_job(workspace.url, auth_headers(workspace))
    client.cancel_job(job_id)
    env = {"FLOWYARD_WORKSPACE_URL": workspace.url}
    no = run_cli("job", "delete", job_id, cwd=workspace.cwd, env=env, input="n\n")
    assert no.returncode == 1 and "Aborted" in no.stderr
    assert client.get_job(job_id).status == JobStatus.CANCELED
    bad = run_cli(
        "job", "delete", job_id, "--status", "failed", "--yes", cwd=workspace.cwd, env=env
    )
    assert bad.returncode == 2 and "not both" in bad.stderr
    yes = run_cli("job", "delete", job_id, cwd=workspace.cwd, env=env, input="y\n")
    assert yes.returncode == 0, yes.stderr
    assert "deleted 1 job(s), 1 run(s)" in yes.stdout
    with pytest.raises(NotFoundError):
        client.get_job(job_id)
    experiment = _tracking(workspace).create_experiment("deletions-cli")
    gone = run_cli("experiment", "delete", experiment, "--yes", cwd=workspace.cwd, env=env)
    assert gone.returncode == 0, gone.stderr
    assert "deleted 0 job(s), 0 run(s)" in gone.stdout
