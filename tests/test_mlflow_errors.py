"""Code written for MLflow's own backends keeps working: errors from
``mlflow.projects.run(..., backend="flowyard")`` are MLflow's ``ExecutionException`` (and still
Flowyard's own class), and every way of submitting prints what the user needs next."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import ExecutionException, MlflowException

from flowyard.client import Client
from flowyard.errors import FlowyardError, InvalidRequestError, NotAWorkspaceError
from flowyard.mlflow_errors import as_execution_exception
from flowyard.schemas import JobStatus
from flowyard.submitted_run import FlowyardSubmittedRun
from tests.factories import make_project
from tests.servers import Server

LOCAL = {"USE_CONDA": False}


@pytest.fixture
def tracking(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(sqlite_server.url)
    yield mlflow.set_experiment(f"errors-{tmp_path.name}").experiment_id
    mlflow.set_tracking_uri(None)


def test_a_flowyard_error_is_also_an_execution_exception() -> None:
    error = as_execution_exception(InvalidRequestError("The entry point 'x' is unknown; use main."))
    assert isinstance(error, InvalidRequestError)
    assert isinstance(error, ExecutionException)
    assert str(error) == error.message == "The entry point 'x' is unknown; use main."
    assert error.to_payload()["error_code"] == "INVALID_REQUEST"
    assert type(as_execution_exception(error)) is type(error)


def test_errors_before_submission_are_execution_exceptions(tracking: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "print(1)\n")
    with pytest.raises(ExecutionException, match="entry point") as err:
        mlflow.projects.run(
            str(project), entry_point="nope", backend="flowyard", backend_config=LOCAL
        )
    assert isinstance(err.value, FlowyardError)
    with pytest.raises(ExecutionException, match="must be a number"):
        mlflow.projects.run(
            str(project),
            parameters={"alpha": "not a number"},
            backend="flowyard",
            backend_config=LOCAL,
        )
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    with pytest.raises(MlflowException) as not_a_workspace:
        mlflow.projects.run(
            str(project), backend="flowyard", backend_config=LOCAL, experiment_id="0"
        )
    assert isinstance(not_a_workspace.value, NotAWorkspaceError)


def test_errors_after_submission_are_execution_exceptions(
    tracking: str, sqlite_server: Server, tmp_path: Path
) -> None:
    """The workspace going away while a run is followed."""
    project = make_project(tmp_path / "p", "import time\ntime.sleep(30)\n")
    run = mlflow.projects.run(
        str(project), backend="flowyard", backend_config=LOCAL, synchronous=False
    )
    gone = FlowyardSubmittedRun(Client("http://127.0.0.1:9"), run.job, out=io.StringIO())
    with pytest.raises(ExecutionException, match="does not answer"):
        gone.wait()
    run.cancel()


def test_a_failure_is_explained_even_without_streamed_output(
    tracking: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_project(tmp_path / "p", "import time\nprint('quiet')\ntime.sleep(30)\n")
    with pytest.raises(ExecutionException):
        mlflow.projects.run(
            str(project),
            backend="flowyard",
            backend_config={**LOCAL, "STREAM_OUTPUT": False, "TIMEOUT": 1},
        )
    printed = capsys.readouterr().out
    assert "quiet" not in printed  # the log is not streamed
    assert "Timeout: timed out after 1 s" in printed
    assert "flowyard job logs" in printed


def test_mlflow_run_cli_says_where_the_job_is(sqlite_server: Server, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "print('hello')\n")
    config = tmp_path / "c.json"
    config.write_text(json.dumps(LOCAL))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "run",
            str(project),
            "-b",
            "flowyard",
            "--backend-config",
            str(config),
            "-P",
            "alpha=0.2",
        ],
        env={
            **os.environ,
            "MLFLOW_TRACKING_URI": sqlite_server.url,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    job = Client(sqlite_server.url).list_jobs(limit=1)[0]
    assert f"Job {job.run_id} on local: {sqlite_server.url}/#/experiments/" in done.stderr
    assert f"flowyard job logs {job.run_id} -f" in done.stderr
    assert job.status != JobStatus.FAILED
