"""Access control against a real server: each role and each kind of endpoint, job tokens,
token lifetimes, and the Azure-sample code running unchanged with a token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard import Workspace
from flowyard.client import Client
from flowyard.errors import UnauthenticatedError
from flowyard.snapshot import build_manifest, upload
from tests.factories import EXAMPLE, make_project
from tests.servers import Server, free_port, run_cli

API = "/api/flowyard/v1"


def call(server: Server, method: str, path: str, token: str | None, **kwargs: Any) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, server.url + path, headers=headers, timeout=30, **kwargs
    ).status_code


def new_token(server: Server, role: str, **extra: Any) -> str:
    user = f"{role}-{uuid.uuid4().hex[:6]}"
    with Client(server.url, token=server.token) as owner:
        owner.request("POST", "/users", json={"name": user})
        body = owner.request("POST", "/tokens", json={"role": role, "user": user, **extra})
    return str(body["token"])


# Each kind of endpoint, as a request that succeeds (or fails on its own merits, never 401/403)
# when allowed.
ENDPOINTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "mlflow read": ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"max_results": 1}}),
    "mlflow write": ("POST", "/api/2.0/mlflow/experiments/create", {}),
    "mlflow delete": ("POST", "/api/2.0/mlflow/experiments/delete", {}),
    "submit": ("POST", f"{API}/jobs", {}),
    "cancel": ("POST", f"{API}/jobs/{'0' * 32}/cancel", {}),
    "compute admin": ("POST", f"{API}/computes", {}),
    "token admin": ("GET", f"{API}/tokens", {}),
    "studio": ("GET", "/studio/jobs", {}),
    "artifact upload": ("PUT", "/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/a.txt", {}),
    # Only the job's own token, never a user's.
    "runner call": ("POST", f"{API}/jobs/{'0' * 32}/heartbeat", {}),
}
ALLOWED = {
    "reader": {"mlflow read", "studio"},
    "contributor": {"mlflow read", "studio", "mlflow write", "submit", "cancel", "artifact upload"},
    "owner": set(ENDPOINTS) - {"runner call"},
}


def _request(kind: str) -> tuple[str, str, dict[str, Any]]:
    method, path, kwargs = ENDPOINTS[kind]
    unique = uuid.uuid4().hex[:8]
    if kind == "mlflow write":
        kwargs = {"json": {"name": f"auth-{unique}"}}
    elif kind == "mlflow delete":
        kwargs = {"json": {"experiment_id": "999999"}}
    elif kind == "submit":
        kwargs = {"json": {"experiment_id": "0", "snapshot_id": "0" * 64, "project_uri": "."}}
    elif kind == "compute admin":
        kwargs = {"json": {"name": f"c-{unique}", "type": "process"}}
    elif kind == "artifact upload":
        kwargs = {"content": b"x"}
    return method, path, kwargs


@pytest.mark.parametrize("role", ["reader", "contributor", "owner"])
def test_each_role_on_each_kind_of_endpoint(sqlite_server: Server, role: str) -> None:
    token = new_token(sqlite_server, role)
    outcome = {}
    for kind in ENDPOINTS:
        method, path, kwargs = _request(kind)
        outcome[kind] = call(sqlite_server, method, path, token, **kwargs)
    allowed = {k for k, status in outcome.items() if status not in (401, 403)}
    assert allowed == ALLOWED[role], outcome
    assert {outcome[k] for k in set(ENDPOINTS) - allowed} <= {403}, outcome


def test_no_token_is_401_everywhere_but_health(sqlite_server: Server) -> None:
    for kind in ENDPOINTS:
        method, path, kwargs = _request(kind)
        response = httpx.request(method, sqlite_server.url + path, timeout=30, **kwargs)
        assert response.status_code == 401, kind
        if path.startswith("/api/"):
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert "FLOWYARD_TOKEN" in response.json()["message"]
    assert call(sqlite_server, "GET", f"{API}/health", None) == 200
    assert call(sqlite_server, "GET", f"{API}/info", None) == 401
    # A wrong token is no better than none.
    assert call(sqlite_server, "GET", f"{API}/jobs", "fy_0123456789abcdef_" + "x" * 43) == 401
    assert call(sqlite_server, "GET", f"{API}/jobs", "not-a-token") == 401


def test_revoked_and_expired_tokens_stop_working(sqlite_server: Server) -> None:
    token = new_token(sqlite_server, "reader")
    assert call(sqlite_server, "GET", f"{API}/jobs", token) == 200
    token_id = token.split("_")[1]
    assert call(sqlite_server, "DELETE", f"{API}/tokens/{token_id}", sqlite_server.token) == 200
    assert call(sqlite_server, "GET", f"{API}/jobs", token) == 401

    soon = (datetime.now(UTC) + timedelta(seconds=1.5)).isoformat()
    short = new_token(sqlite_server, "reader", expires_at=soon)
    assert call(sqlite_server, "GET", f"{API}/jobs", short) == 200
    time.sleep(2)
    assert call(sqlite_server, "GET", f"{API}/jobs", short) == 401

    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    with Client(sqlite_server.url, token=sqlite_server.token) as owner:
        status = owner.http.post("/tokens", json={"role": "reader", "expires_at": past})
    assert status.status_code == 400 and "past" in status.json()["message"]


PROBE = """\
import json, os, sys
import httpx
import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

url, run = os.environ["MLFLOW_TRACKING_URI"], os.environ["MLFLOW_RUN_ID"]
token = os.environ["FLOWYARD_TOKEN"]
other_run, other_snapshot, own_snapshot = sys.argv[1:4]
client = MlflowClient()
result = {}

def attempt(name, fn):
    try:
        fn()
        result[name] = "ok"
    except MlflowException as e:
        result[name] = e.get_http_status_code()
    except Exception as e:
        result[name] = repr(e)

def log_and_load_model():
    import mlflow.sklearn
    from sklearn.linear_model import LinearRegression

    with mlflow.start_run(run_id=run):
        info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1]], [0, 1]), name="model")
    mlflow.sklearn.load_model(info.model_uri)

attempt("own metric", lambda: client.log_metric(run, "m", 1.0))
attempt("other metric", lambda: client.log_metric(other_run, "m", 1.0))
attempt("other tag", lambda: client.set_tag(other_run, "t", "x"))
attempt("own param", lambda: client.log_param(run, "p", "1"))
attempt("new run", lambda: client.create_run(os.environ["MLFLOW_EXPERIMENT_ID"]))
attempt("log model", log_and_load_model)
attempt("delete other run", lambda: client.delete_run(other_run))
headers = {"Authorization": f"Bearer {token}"}
for name, method, path in [
    ("own snapshot", "GET", f"/api/flowyard/v1/snapshots/{own_snapshot}"),
    ("other snapshot", "GET", f"/api/flowyard/v1/snapshots/{other_snapshot}"),
    ("list jobs", "GET", "/api/flowyard/v1/jobs"),
    ("tokens", "GET", "/api/flowyard/v1/tokens"),
    ("other job", "GET", f"/api/flowyard/v1/jobs/{other_run}"),
    ("other's heartbeat", "POST", f"/api/flowyard/v1/jobs/{other_run}/heartbeat"),
    ("own heartbeat", "POST", f"/api/flowyard/v1/jobs/{run}/heartbeat"),
]:
    result[name] = httpx.request(method, url + path, headers=headers).status_code
os.makedirs("outputs", exist_ok=True)
json.dump({"result": result, "token": token}, open("outputs/probe.json", "w"))
"""


def test_a_job_token_acts_as_a_contributor_and_ends_with_its_job(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        experiment = mlflow.set_experiment(f"job-token-{tmp_path.name}")
        other_run = MlflowClient().create_run(experiment.experiment_id).info.run_id
        with Client(sqlite_server.url) as client:
            other = make_project(tmp_path / "other", "print('other')\n")
            other_snapshot = upload(client, build_manifest(other)).id
        project = make_project(
            tmp_path / "probe",
            PROBE,
            parameters="{other_run: string, other_snapshot: string, own_snapshot: string}",
            command="python main.py {other_run} {other_snapshot} {own_snapshot}",
        )
        with Client(sqlite_server.url) as client:
            own_snapshot = upload(client, build_manifest(project)).id
        submitted = mlflow.projects.run(
            uri=str(project),
            parameters={
                "other_run": other_run,
                "other_snapshot": other_snapshot,
                "own_snapshot": own_snapshot,
            },
            backend="flowyard",
            backend_config={"USE_CONDA": False},
        )
        client = MlflowClient()
        local = client.download_artifacts(submitted.run_id, "outputs/probe.json", str(tmp_path))
        probe = json.loads(Path(local).read_text())
        other_metrics = client.get_run(other_run).data.metrics
    finally:
        mlflow.set_tracking_uri(None)
    assert probe["result"] == {
        "own metric": "ok",
        "other metric": "ok",
        "other tag": "ok",
        "own param": "ok",
        "new run": "ok",
        "log model": "ok",
        "delete other run": 403,
        "own snapshot": 200,
        "other snapshot": 200,
        "list jobs": 200,
        "tokens": 403,
        "other job": 404,  # a plain MLflow run, not a job
        "other's heartbeat": 403,
        "own heartbeat": 200,
    }
    assert other_metrics == {"m": 1.0}
    # The job has ended: its token with it.
    token = probe["token"]
    assert token.startswith("fyj_")
    assert call(sqlite_server, "GET", f"{API}/jobs/{submitted.run_id}", token) == 401
    run_id = submitted.run_id
    assert call(sqlite_server, "POST", f"{API}/jobs/{run_id}/heartbeat", token) == 401
    # A forged one (another job's id under this signature) is refused too.
    forged = token.replace(run_id, other_run)
    assert call(sqlite_server, "GET", f"{API}/jobs/{other_run}", forged) == 401


def test_azure_sample_code_runs_unchanged_with_the_token_in_the_environment(
    sqlite_server: Server, tmp_path: Path
) -> None:
    """examples/train_local.py as a user runs it: the token only in FLOWYARD_TOKEN (no
    credentials file), and then with no token at all, which fails with a clear message."""
    project = tmp_path / "project"
    project.mkdir()
    Workspace(name="tests", url=sqlite_server.url).write_config(project)
    script = (Path(EXAMPLE).parent / "train_local.py").read_text()
    here = 'Path(__file__).parent / "sklearn_elasticnet"'
    assert here in script
    (project / "train.py").write_text(script.replace(here, f"Path({str(EXAMPLE)!r})"))
    env = {
        **os.environ,
        # What this test process exported for its own MLflow calls is not the sample's.
        "MLFLOW_TRACKING_TOKEN": "",
        "XDG_CONFIG_HOME": str(tmp_path / "empty-config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "FLOWYARD_TOKEN": new_token(sqlite_server, "contributor"),
    }
    done = subprocess.run(
        [sys.executable, "train.py"],
        cwd=project,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith(": FINISHED"), done.stdout

    del env["FLOWYARD_TOKEN"]
    refused = subprocess.run(
        [sys.executable, "train.py"],
        cwd=project,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode != 0
    assert "needs a token" in refused.stderr and "FLOWYARD_TOKEN" in refused.stderr


def test_the_client_and_the_mlflow_plugin_find_the_saved_token(sqlite_server: Server) -> None:
    with Client(sqlite_server.url) as client:
        assert client.request("GET", "/whoami")["role"] == "owner"
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        # Plain MLflow calls carry the token through the request-header plugin.
        assert MlflowClient().search_experiments(max_results=1) is not None
    finally:
        mlflow.set_tracking_uri(None)
    with pytest.raises(UnauthenticatedError, match="unknown, expired or revoked"):
        Client(sqlite_server.url, token="fy_0123456789abcdef_" + "x" * 43).request("GET", "/jobs")


def test_cli_users_and_tokens(sqlite_server: Server, tmp_path: Path) -> None:
    env = {"FLOWYARD_WORKSPACE_URL": sqlite_server.url}
    name = f"ana-{uuid.uuid4().hex[:6]}"
    assert run_cli("user", "create", name, cwd=tmp_path, env=env).returncode == 0
    assert name in run_cli("user", "list", cwd=tmp_path, env=env).stdout
    made = run_cli(
        "token",
        "create",
        "--role",
        "reader",
        "--user",
        name,
        "--expires",
        "7d",
        cwd=tmp_path,
        env=env,
    )
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("fy_") and "expires" in made.stderr
    listed = run_cli("token", "list", "--user", name, cwd=tmp_path, env=env).stdout
    assert token.split("_")[1] in listed and token not in listed  # only ids are ever shown again
    who = run_cli("whoami", cwd=tmp_path, env={**env, "FLOWYARD_TOKEN": token})
    assert who.stdout.startswith(f"{name} (reader)")
    denied = run_cli("token", "list", cwd=tmp_path, env={**env, "FLOWYARD_TOKEN": token})
    assert denied.returncode != 0 and "it needs a owner token" in denied.stderr
    bad = run_cli("token", "create", "--role", "reader", "--expires", "soon", cwd=tmp_path, env=env)
    assert bad.returncode != 0 and "--expires 'soon'" in bad.stderr
    assert run_cli("user", "delete", name, cwd=tmp_path, env=env).returncode == 0
    gone = run_cli("whoami", cwd=tmp_path, env={**env, "FLOWYARD_TOKEN": token})
    assert gone.returncode != 0 and "unknown, expired or revoked" in gone.stderr


def test_login_saves_a_checked_token_privately(sqlite_server: Server, tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    token = new_token(sqlite_server, "reader")
    wrong = run_cli("login", "--url", sqlite_server.url, "--token", "nope", cwd=tmp_path, env=env)
    assert (
        wrong.returncode != 0 and not (tmp_path / "cfg" / "flowyard" / "credentials.json").exists()
    )
    ok = run_cli("login", "--url", sqlite_server.url, "--token", token, cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    path = tmp_path / "cfg" / "flowyard" / "credentials.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["tokens"][sqlite_server.url] == token


def test_serving_without_auth_off_loopback_is_refused(tmp_path: Path) -> None:
    port = free_port()
    args = ["workspace", "init", str(tmp_path / "ws"), "--url", f"http://127.0.0.1:{port}"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    refused = run_cli(
        "server", "--no-auth", "--host", "0.0.0.0", "--port", str(port), cwd=tmp_path, timeout=60
    )
    assert refused.returncode != 0
    assert "Refusing to serve without auth on 0.0.0.0" in refused.stderr


def test_a_loopback_workspace_may_run_without_auth(tmp_path: Path) -> None:
    port = free_port()
    args = ["workspace", "init", str(tmp_path / "ws"), "--url", f"http://127.0.0.1:{port}"]
    assert run_cli(*args, cwd=tmp_path).returncode == 0
    server = Server(args=["--no-auth"], cwd=tmp_path, port=port).start()
    try:
        response = httpx.get(server.url + f"{API}/whoami", timeout=30)
        assert response.status_code == 200 and response.json()["auth"] is False
    finally:
        server.stop()


def test_whoever_holds_the_folder_gets_back_in_without_a_token(
    sqlite_server: Server, tmp_path: Path
) -> None:
    """Every owner token lost: `token create --workspace DIR` writes one into the database."""
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
        "FLOWYARD_TOKEN": "",
        "MLFLOW_TRACKING_TOKEN": "",
    }
    locked_out = run_cli("whoami", cwd=sqlite_server.cwd, env=env)
    assert locked_out.returncode != 0 and "needs a token" in locked_out.stderr
    folder = str(sqlite_server.cwd / "ws")
    args = ["token", "create", "--role", "owner", "--workspace", folder, "--save"]
    made = run_cli(*args, cwd=sqlite_server.cwd, env=env)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("fy_") and sqlite_server.url in made.stderr
    back = run_cli("whoami", cwd=sqlite_server.cwd, env=env)
    assert back.returncode == 0 and back.stdout.startswith("owner (owner)"), back.stderr
    missing = run_cli(*args[:-2], str(tmp_path / "nothing-here"), cwd=tmp_path, env=env)
    assert missing.returncode != 0 and "is not a workspace folder" in missing.stderr
