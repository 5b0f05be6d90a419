"""A re-run works from what its job stored at submit: the entry point's parameter types and
command template, checked and built with MLflow's own ``EntryPoint``, without the project."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.jobspec import EntryPointSpec, ParameterSpec
from flowyard.prepared_project import prepare
from tests.factories import make_project
from tests.servers import Server, run_cli

SPEC: dict[str, Any] = {
    "name": "main",
    "parameters": {"alpha": {"type": "float", "default": 0.5}, "data": {"type": "string"}},
    "command": "python main.py --alpha {alpha} --data {data}",
}


def test_prepare_stores_the_entry_point_as_mlflow_reads_it(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        "print('hi')",
        parameters="{alpha: {type: float, default: 0.5}, data: string}",
        command="python main.py --alpha {alpha} --data {data}",
    )
    prepared = prepare(str(project), None, "main", {"data": "x"})
    assert prepared.entry_point_spec == EntryPointSpec(
        name="main",
        command="python main.py --alpha {alpha} --data {data}",
        parameters={"alpha": ParameterSpec("float", 0.5), "data": ParameterSpec("string")},
    )


@pytest.fixture(scope="module")
def compute(sqlite_server: Server) -> str:
    name = f"reruns-{uuid.uuid4().hex[:6]}"
    env = {"FLOWYARD_WORKSPACE_URL": sqlite_server.url}
    result = run_cli("compute", "create", name, "--type", "process", cwd=sqlite_server.cwd, env=env)
    assert result.returncode == 0, result.stderr
    return name


def _job(
    client: Client, compute: str, options: dict[str, Any], mlproject: bytes | None = None
) -> str:
    """A job whose snapshot holds main.py (and ``mlproject`` as its MLproject, if given),
    submitted through the API."""
    files = []
    for path, content in {"main.py": b"print('hi')\n", "MLproject": mlproject}.items():
        if content is None:
            continue
        digest = hashlib.sha256(content).hexdigest()
        client.http.put(f"/blobs/{digest}", content=content).raise_for_status()
        files.append({"path": path, "digest": digest, "size": len(content), "executable": False})
    snapshot = client.request("POST", "/snapshots", json={"files": files})
    job = client.request(
        "POST",
        "/jobs",
        json={
            "experiment_id": "0",
            "snapshot_id": snapshot["id"],
            "project_uri": ".",
            "entry_point": "main",
            "parameters": {"alpha": "0.5", "data": "a b"},
            "options": options,
            "compute": compute,
            "user": "ignored",
        },
    )
    return str(job["id"])


def test_a_rerun_builds_its_command_from_the_stored_entry_point(
    sqlite_server: Server, compute: str
) -> None:
    with Client(sqlite_server.url, token=sqlite_server.token) as client:
        job_id = _job(client, compute, {"entry_point_spec": SPEC, "command": "unused"})
        again = client.request(
            "POST", f"/jobs/{job_id}/rerun", json={"parameters": {"alpha": "0.9"}}
        )
        assert again["parameters"] == {"alpha": "0.9", "data": "a b"}
        assert again["options"]["command"] == "python main.py --alpha 0.9 --data 'a b'"
        # Stored as EntryPointSpec reads it: a parameter given no default has None.
        data = {"type": "string", "default": None}
        stored = {**SPEC, "parameters": {**SPEC["parameters"], "data": data}}
        assert again["options"]["entry_point_spec"] == stored
        with pytest.raises(InvalidRequestError, match="'alpha' must be a number"):
            client.request("POST", f"/jobs/{job_id}/rerun", json={"parameters": {"alpha": "x"}})


def test_a_job_without_a_stored_entry_point_is_checked_against_its_snapshot(
    sqlite_server: Server, compute: str
) -> None:
    with Client(sqlite_server.url, token=sqlite_server.token) as client:
        job_id = _job(client, compute, {"command": "python main.py"})
        # Its snapshot has no MLproject, so there is no entry point `main` to run again.
        with pytest.raises(InvalidRequestError, match="no entry point 'main'"):
            client.request("POST", f"/jobs/{job_id}/rerun", json={"parameters": {}})
        mlproject = (
            b"name: old\nentry_points:\n  main:\n    parameters: {alpha: float, data: string}\n"
            b"    command: python main.py {alpha} {data}\n"
        )
        job_id = _job(client, compute, {"command": "python main.py"}, mlproject)
        again = client.request(
            "POST", f"/jobs/{job_id}/rerun", json={"parameters": {"alpha": "0.25"}}
        )
        assert again["options"]["command"] == "python main.py 0.25 'a b'"
        assert again["options"]["entry_point_spec"]["name"] == "main"
        with pytest.raises(InvalidRequestError, match="'alpha' must be a number"):
            client.request("POST", f"/jobs/{job_id}/rerun", json={"parameters": {"alpha": "x"}})


def test_a_rerun_may_change_name_compute_experiment_priority_and_env_vars(
    sqlite_server: Server, compute: str
) -> None:
    with Client(sqlite_server.url, token=sqlite_server.token) as client:
        job_id = _job(client, compute, {"entry_point_spec": SPEC, "env_vars": {"A": "1"}})
        before = len(client.list_jobs())
        refusals = [
            ({"compute": "local"}, InvalidRequestError, "cannot start a runner; choose one of"),
            ({"compute": "nowhere"}, NotFoundError, "nowhere"),
            ({"experiment_id": "987654"}, NotFoundError, "Experiment 987654 does not exist"),
            ({"env_vars": {"A=B": "1"}}, InvalidRequestError, "ENV_VARS names must be"),
        ]
        for body, error, message in refusals:
            with pytest.raises(error, match=message):
                client.request("POST", f"/jobs/{job_id}/rerun", json={"parameters": {}, **body})
        assert len(client.list_jobs()) == before  # nothing half-created
        first = client.request(
            "POST",
            f"/jobs/{job_id}/rerun",
            json={"parameters": {}, "priority": 5, "env_vars": {"B": "2"}},
        )
        assert first["priority"] == 5 and first["options"]["env_vars"] == {"B": "2"}
        second = client.request(
            "POST", f"/jobs/{first['id']}/rerun", json={"parameters": {}, "run_name": "mine"}
        )
        # Left out, the rest is the re-run job's own.
        assert second["priority"] == 5 and second["options"]["env_vars"] == {"B": "2"}
        third = client.request("POST", f"/jobs/{second['id']}/rerun", json={"parameters": {}})
    mlflow.set_tracking_uri(sqlite_server.url)  # the token plugin finds the saved token
    try:
        ids = [job_id, first["id"], second["id"], third["id"]]
        names = {i: MlflowClient().get_run(i).info.run_name for i in ids}
    finally:
        mlflow.set_tracking_uri(None)
    original = names[job_id]
    assert names[first["id"]] == f"{original} (rerun 1)"
    assert names[second["id"]] == "mine"
    assert names[third["id"]] == f"{original} (rerun 3)"
