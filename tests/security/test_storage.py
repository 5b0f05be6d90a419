"""Storage stays inside the workspace: a contributor cannot point an experiment or a model version
at a folder of the server's machine (or any other store), nor write there through MLflow's UI
upload route; after each refused attempt nothing was written outside the workspace."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowyard import defaults
from flowyard.client import Client
from tests.servers import Server, free_port, init_workspace

PREFIXES = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"]


@dataclass
class Workspace:
    server: Server
    folder: Path
    outside: Path  # a folder of the server's machine, outside the workspace
    contributor: httpx.Client

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        return self.contributor.post(path, content=json.dumps(body).encode(), **kwargs)


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("storage")
    port = free_port()
    folder = init_workspace(root / "project", port=port)
    server = Server(args=[], cwd=root / "project", port=port).start()
    with Client(server.url, token=server.token) as owner:
        owner.request("POST", "/users", json={"name": "carol"})
        token = owner.request("POST", "/tokens", json={"role": "contributor", "user": "carol"})
    with httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {token['token']}", "Content-Type": "application/json"},
        timeout=30,
    ) as contributor:
        yield Workspace(server, folder, root / "outside", contributor)
    server.stop()


def _refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    message: str = body["message"]
    assert message.endswith(".") and ";" in message, message
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    "location",
    [
        "{outside}",
        "file://{outside}",
        "{outside}/../outside",
        "mlflow-artifacts:/../../{outside}",
        "mlflow-artifacts:/a/%2e%2e/%2e%2e/x",
        "mlflow-artifacts:/flowyard/x",
        "mlflow-artifacts://elsewhere.example/x",
        "s3://some-bucket/x",
    ],
)
def test_an_experiment_outside_the_store_is_refused(
    ws: Workspace, prefix: str, location: str
) -> None:
    location = location.format(outside=ws.outside)
    name = f"evil-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "artifact_location": location}
    response = ws.post(f"{prefix}/experiments/create", body)
    _refused(response, "artifact_location", "outside the workspace's artifact store")
    # Old clients' double-encoded body is read the same way.
    _refused(ws.post(f"{prefix}/experiments/create", json.dumps(body)), "artifact_location")
    # MLflow takes the field's camelCase name (its protobuf JSON name) as well.
    camel = {"name": name, "artifactLocation": location}
    _refused(ws.post(f"{prefix}/experiments/create", camel), "artifact_location")
    found = ws.contributor.get(
        "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name}
    )
    assert found.status_code == 404
    assert not ws.outside.exists()


def test_experiments_inside_the_store_still_work_and_uploads_land_there(ws: Workspace) -> None:
    for location in ("", "mlflow-artifacts:/team-a"):
        body = {"name": f"ok-{uuid.uuid4().hex[:8]}", "artifact_location": location}
        response = ws.post("/api/2.0/mlflow/experiments/create", body)
        assert response.status_code == 200, response.text
        experiment_id = response.json()["experiment_id"]
        run = ws.post("/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}).json()
        run_id = run["run"]["info"]["run_id"]
        uploaded = ws.contributor.post(
            "/ajax-api/2.0/mlflow/upload-artifact",
            params={"run_uuid": run_id, "path": "notes/a.txt"},
            content=b"hello",
            headers={"Content-Type": "application/octet-stream"},
        )
        assert uploaded.status_code == 200, uploaded.text
        # MLflow's upload route files a proxied run's artifacts by experiment and run id.
        store = ws.folder / defaults.ARTIFACTS_DIR
        assert len(list(store.rglob(f"{run_id}/artifacts/notes/a.txt"))) == 1


@pytest.mark.parametrize("path", ["a\\..\\..\\x.txt", "a\x01.txt", "a//b.txt", "x" * 300])
def test_the_ui_upload_route_goes_through_the_artifact_path_guard(ws: Workspace, path: str) -> None:
    run = ws.post("/api/2.0/mlflow/runs/create", {"experiment_id": "0"}).json()
    response = ws.contributor.post(
        "/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run["run"]["info"]["run_id"], "path": path},
        content=b"x",
        headers={"Content-Type": "application/octet-stream"},
    )
    _refused(response, "The artifact path")


@pytest.mark.parametrize(
    "source",
    [
        "{outside}",
        "file://{outside}",
        "s3://some-bucket/model",
        "https://elsewhere.example/model",
        "mlflow-artifacts:/../../etc",
        "mlflow-artifacts://elsewhere.example/model",
    ],
)
def test_a_model_version_from_outside_the_store_is_refused(ws: Workspace, source: str) -> None:
    name = f"model-{uuid.uuid4().hex[:8]}"
    created = ws.post("/api/2.0/mlflow/registered-models/create", {"name": name})
    assert created.status_code == 200, created.text
    body = {"name": name, "source": source.format(outside=ws.outside)}
    response = ws.post("/api/2.0/mlflow/model-versions/create", body)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    versions = ws.contributor.get(
        "/api/2.0/mlflow/registered-models/get", params={"name": name}
    ).json()
    assert "latest_versions" not in versions["registered_model"]
    assert not ws.outside.exists()


def test_a_model_version_from_a_run_still_registers(ws: Workspace) -> None:
    run = ws.post("/api/2.0/mlflow/runs/create", {"experiment_id": "0"}).json()["run"]["info"]
    name = f"model-{uuid.uuid4().hex[:8]}"
    assert ws.post("/api/2.0/mlflow/registered-models/create", {"name": name}).is_success
    for source in (f"runs:/{run['run_id']}/model", f"{run['artifact_uri']}/model"):
        body = {"name": name, "source": source, "run_id": run["run_id"]}
        response = ws.post("/api/2.0/mlflow/model-versions/create", body)
        assert response.status_code == 200, response.text


def test_a_run_of_an_experiment_made_outside_before_cannot_upload_there(ws: Workspace) -> None:
    """An experiment given an outside location before the workspace refused them (made here by
    writing the database, as an older server would have) takes no uploads through the UI."""
    name = f"legacy-{uuid.uuid4().hex[:8]}"
    created = ws.post("/api/2.0/mlflow/experiments/create", {"name": name})
    experiment_id = created.json()["experiment_id"]
    with sqlite3.connect(ws.folder / defaults.SQLITE_FILE) as db:
        db.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            (str(ws.outside), int(experiment_id)),
        )
    run = ws.post("/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id}).json()
    assert run["run"]["info"]["artifact_uri"].startswith(str(ws.outside))
    response = ws.contributor.post(
        "/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run["run"]["info"]["run_id"], "path": "x.txt"},
        content=b"x",
        headers={"Content-Type": "application/octet-stream"},
    )
    _refused(response, "outside the workspace's artifact store")
    assert not ws.outside.exists()
