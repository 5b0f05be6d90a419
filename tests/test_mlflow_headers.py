"""The MLflow header plugin: plain MLflow calls carry the workspace's token, and so do the entry
points MLflow's own local backend starts in environments where the plugin is not installed."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from flowyard.credentials import ENV_MLFLOW_TOKEN, ENV_TOKEN
from tests.factories import make_project
from tests.servers import Server


@pytest.fixture
def no_token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the credentials file knows the token, as after `flowyard login`."""
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    monkeypatch.delenv(ENV_MLFLOW_TOKEN, raising=False)


def test_the_token_is_exported_for_child_processes_and_follows_the_uri(
    sqlite_server: Server, no_token_in_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        MlflowClient().search_experiments()
        assert os.environ[ENV_MLFLOW_TOKEN] == sqlite_server.token
        mlflow.set_tracking_uri("http://127.0.0.1:9/")  # nothing answers, nothing saved for it
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        with pytest.raises(MlflowException):
            MlflowClient().search_experiments()
        assert ENV_MLFLOW_TOKEN not in os.environ
    finally:
        mlflow.set_tracking_uri(None)


def test_a_token_the_user_set_is_left_alone(
    sqlite_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sqlite_server.token
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    monkeypatch.setenv(ENV_MLFLOW_TOKEN, sqlite_server.token)
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        MlflowClient().search_experiments()
        assert os.environ[ENV_MLFLOW_TOKEN] == sqlite_server.token
    finally:
        mlflow.set_tracking_uri(None)


def test_mlflow_local_backend_with_uv_tracks_to_the_workspace(
    sqlite_server: Server, no_token_in_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow builds the entry point's environment with uv (no Flowyard in it): its MLflow calls
    still carry the token, with no step by the user."""
    project = make_project(
        tmp_path / "p",
        """\
        import mlflow
        mlflow.log_metric("x", 1.0)
        """,
        parameters="{}",
        command="python main.py",
        extra_mlproject="python_env: python_env.yaml",
        files={
            "python_env.yaml": (
                f'python: "{platform.python_version()}"\n'
                f"dependencies:\n  - mlflow-skinny=={mlflow.__version__}\n"
            )
        },
    )
    # MLflow calls `uv` by name; its environments go to a folder of this test's own.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("MLFLOW_ENV_ROOT", str(tmp_path / "envs"))
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        mlflow.set_experiment(f"uv-{tmp_path.name}")
        run = mlflow.projects.run(str(project), backend="local", env_manager="uv")
        assert MlflowClient().get_run(run.run_id).data.metrics == {"x": 1.0}
    finally:
        mlflow.set_tracking_uri(None)


def test_moving_to_another_workspace_needs_no_step(
    sqlite_server: Server, no_token_in_env: None, tmp_path: Path
) -> None:
    """The token exported for the first workspace is stale for the second; MLflow still sends it
    on the first call there, and the workspace takes the plugin's own header instead."""
    from tests.servers import fast_workspace

    other = fast_workspace(tmp_path / "other")
    try:
        for url in (sqlite_server.url, other.url, sqlite_server.url):
            mlflow.set_tracking_uri(url)
            MlflowClient().search_experiments()
    finally:
        mlflow.set_tracking_uri(None)
        other.stop()
