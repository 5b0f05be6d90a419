"""`Workspace` and `.flowyard/config.json`, as user code meets them."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard import Workspace
from flowyard.client import _tls_context
from flowyard.errors import ConfigNotFoundError, NotAWorkspaceError, WorkspaceUnreachableError
from tests.servers import Server, free_port


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLOWYARD_CONFIG", raising=False)
    monkeypatch.delenv("FLOWYARD_WORKSPACE_URL", raising=False)
    return tmp_path


def test_stock_mlflow_client_tracks_against_the_workspace(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Azure-style flow with nothing but the stock MLflow client after the URL is found."""
    Workspace.get(server.url).write_config(tmp_path)
    nested = tmp_path / "src" / "deep"
    nested.mkdir(parents=True)
    monkeypatch.chdir(nested)
    monkeypatch.delenv("FLOWYARD_WORKSPACE_URL", raising=False)

    mlflow.set_tracking_uri(Workspace.from_config().get_mlflow_tracking_uri())
    experiment = mlflow.set_experiment(f"stock-client-{tmp_path.name}")
    artifact = tmp_path / "notes.txt"
    artifact.write_text("hello from the run\n")
    with mlflow.start_run() as run:
        mlflow.log_param("alpha", 0.3)
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_artifact(str(artifact))

    runs = mlflow.search_runs(experiment_ids=[experiment.experiment_id], output_format="list")
    assert [r.info.run_id for r in runs] == [run.info.run_id]
    assert runs[0].data.params == {"alpha": "0.3"}
    assert runs[0].info.status == "FINISHED"
    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="notes.txt", dst_path=str(tmp_path / "dl")
    )
    assert Path(downloaded).read_text() == "hello from the run\n"
    # The artifact went through the workspace's proxy, not to a path on this machine.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")


def test_info_identifies_the_workspace(sqlite_server: Server) -> None:
    ws = Workspace.get(sqlite_server.url)
    assert ws.name == "tests"
    assert ws.get_mlflow_tracking_uri() == sqlite_server.url


def test_from_config_walks_up_and_env_overrides(
    sqlite_server: Server, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = isolated / ".flowyard" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps({"workspace_name": "x", "url": "http://127.0.0.1:9"}))
    (isolated / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(isolated / "a" / "b")
    with pytest.raises(WorkspaceUnreachableError, match=r"http://127\.0\.0\.1:9 does not answer"):
        Workspace.from_config()
    monkeypatch.setenv("FLOWYARD_WORKSPACE_URL", sqlite_server.url)
    assert Workspace.from_config().url == sqlite_server.url


def test_from_config_takes_a_file_path_and_flowyard_config(
    sqlite_server: Server, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = Workspace.get(sqlite_server.url).write_config(isolated / "elsewhere.json")
    assert Workspace.from_config(written).url == sqlite_server.url
    monkeypatch.setenv("FLOWYARD_CONFIG", str(written))
    assert Workspace.from_config().name == "tests"


def test_config_not_found_names_the_folders_and_the_command(isolated: Path) -> None:
    with pytest.raises(ConfigNotFoundError) as err:
        Workspace.from_config()
    message = str(err.value)
    assert str(isolated.resolve()) in message
    assert "parent folders" in message
    assert "flowyard workspace init" in message


def test_unreachable_url_names_it_and_how_to_start_a_server() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(WorkspaceUnreachableError) as err:
        Workspace.get(url)
    assert url in str(err.value)
    assert "flowyard server" in str(err.value)


class _NotFlowyard(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<html>some other service</html>" if self.path != "/json" else b"{}"
        self.send_response(200 if "/api/flowyard" not in self.path else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def other_service() -> Iterator[str]:
    httpd = HTTPServer(("127.0.0.1", 0), _NotFlowyard)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_a_url_that_answers_but_is_not_a_workspace(other_service: str) -> None:
    with pytest.raises(NotAWorkspaceError, match="answers but is not a Flowyard workspace"):
        Workspace.get(other_service)


def test_stock_mlflow_server_is_not_a_workspace(
    sqlite_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's own routes answer on the same port, but only the Flowyard API identifies it."""
    assert sqlite_server.token
    monkeypatch.setenv("FLOWYARD_TOKEN", sqlite_server.token)
    with pytest.raises(NotAWorkspaceError):
        Workspace.get(sqlite_server.url + "/mlflow-only")


def test_a_plain_http_client_loads_no_ca_certificates_and_trusts_no_tls_peer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Loading the CA bundle is most of a Client's construction, which every runner pays before
    its job starts; over plain HTTP with no proxy nothing would use it."""
    for scheme in ("http", "https", "all"):
        for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY"):
            monkeypatch.delenv(name, raising=False)
    context = _tls_context("http://127.0.0.1:5000")
    assert isinstance(context, ssl.SSLContext)
    assert context.cert_store_stats()["x509_ca"] == 0
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert _tls_context("https://workspace.example") is True
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:3128")
    assert _tls_context("http://127.0.0.1:5000") is True
