"""`mlflow.projects.run(..., backend="flowyard")` end to end, with the real MLflow client against a
real workspace server, and every bad input refused before anything is created."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard import Workspace
from flowyard.client import Client
from flowyard.errors import FlowyardError, NotAWorkspaceError
from flowyard.projects import run as flowyard_run
from flowyard.schemas import JobStatus
from flowyard.submitted_run import FlowyardSubmittedRun
from tests.factories import EXAMPLE, make_project, read_news_while_gate_opens, waits_for_gate
from tests.servers import Server

LOCAL = {"USE_CONDA": False}


@pytest.fixture
def tracking(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The MLflow client pointed at the workspace, in a fresh experiment, with a private cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    experiment = mlflow.set_experiment(f"plugin-{tmp_path.name}")
    yield experiment.experiment_id
    mlflow.set_tracking_uri(None)


def _wait_final(client: Client, run_id: str, timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_job(run_id).status
        if status.is_final:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {run_id} did not end within {timeout} s")


def test_the_azure_flow_trains_the_example_and_tracks_everything(
    tracking: str, sqlite_server: Server
) -> None:
    submitted = mlflow.projects.run(
        uri=str(EXAMPLE), parameters={"alpha": 0.3}, backend="flowyard", backend_config=LOCAL
    )
    assert isinstance(submitted, FlowyardSubmittedRun)
    client = MlflowClient()
    run = client.get_run(submitted.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.experiment_id == tracking
    assert run.data.params == {"alpha": "0.3", "l1_ratio": "0.5", "steps": "20"}
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "PROJECT"
    assert tags["mlflow.project.entryPoint"] == "main"
    assert tags["mlflow.project.backend"] == "flowyard"
    assert tags["flowyard.compute"] == "local"
    assert tags["mlflow.user"]
    rmse = client.get_metric_history(submitted.run_id, "rmse")
    assert [m.step for m in rmse] == list(range(20))
    artifacts = {a.path for a in client.list_artifacts(submitted.run_id, "outputs")}
    assert artifacts == {"outputs/model.pkl", "outputs/metrics.json"}
    log = Path(client.download_artifacts(submitted.run_id, "logs/std_log.txt")).read_text()
    assert "step  19" in log
    assert "ElasticNet(alpha=0.3, l1_ratio=0.5)" in log

    job = Client(sqlite_server.url).get_job(submitted.run_id)
    assert job.status == JobStatus.COMPLETED
    assert job.snapshot_id == tags["flowyard.snapshot"]
    assert [e.to_status for e in job.events] == [
        JobStatus.PREPARING,
        JobStatus.RUNNING,
        JobStatus.FINALIZING,
        JobStatus.COMPLETED,
    ]
    files = Client(sqlite_server.url).request("GET", f"/snapshots/{job.snapshot_id}")["files"]
    assert {f["path"] for f in files} == {"MLproject", "conda.yaml", "python_env.yaml", "train.py"}


def test_a_failing_project_reports_its_error(
    tracking: str, sqlite_server: Server, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "fails",
        """\
        import sys

        def check(alpha):
            if alpha > 0.1:
                raise ValueError(f"alpha {alpha} is too large")

        print("starting")
        check(float(sys.argv[2]))
        """,
    )
    with pytest.raises(ExecutionException):
        mlflow.projects.run(
            str(project), parameters={"alpha": 0.3}, backend="flowyard", backend_config=LOCAL
        )
    run = mlflow.search_runs([tracking], output_format="list")[0]
    assert run.info.status == "FAILED"
    job = Client(sqlite_server.url).get_job(run.info.run_id)
    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert job.error.type == "ValueError"
    assert job.error.message == "alpha 0.3 is too large"
    assert job.error.exit_code == 1
    assert 'File "/' in (job.error.traceback or "") and "in check" in (job.error.traceback or "")
    assert "ValueError" in job.events[-1].reason

    # wait() prints the error's type, message and traceback tail, and where the whole log is.
    out = io.StringIO()
    again = FlowyardSubmittedRun(Client(sqlite_server.url), job, out=out)
    assert again.wait() is False
    printed = out.getvalue()
    assert "starting" in printed
    assert "ValueError: alpha 0.3 is too large" in printed
    assert "in check" in printed
    assert f"flowyard job logs {job.run_id}" in printed


def test_asynchronous_submit_then_wait(tracking: str, tmp_path: Path) -> None:
    """Through `flowyard.projects.run`, which takes the Azure samples' `use_conda` argument, with
    a JSON-file backend_config and a run name."""
    config = tmp_path / "backend_config.json"
    config.write_text(json.dumps({"STREAM_OUTPUT": False}))
    submitted = flowyard_run(
        str(EXAMPLE),
        parameters={"alpha": 0.1, "steps": 3},
        backend="flowyard",
        backend_config=str(config),
        use_conda=False,
        synchronous=False,
        run_name="azure-style",
    )
    assert submitted.get_status() in {"SCHEDULED", "RUNNING", "FINISHED"}
    assert submitted.wait() is True
    assert submitted.get_status() == "FINISHED"
    run = MlflowClient().get_run(submitted.run_id)
    assert run.info.run_name == "azure-style"
    assert run.data.tags["mlflow.project.env"] == "local"


def test_a_waiting_log_read_answers_when_there_is_news(tracking: str, tmp_path: Path) -> None:
    """What `wait()` and `flowyard job logs -f` follow a job with: a read that finds nothing new
    waits for more log or another status instead of answering "nothing" at once."""
    gate = tmp_path / "gate"
    project = waits_for_gate(tmp_path / "gated", gate)
    submitted = mlflow.projects.run(
        str(project), backend="flowyard", synchronous=False, backend_config=LOCAL
    )
    with Client(mlflow.get_tracking_uri()) as client:
        log = read_news_while_gate_opens(client, submitted.run_id, gate)
    assert b"through" in log
    assert submitted.wait() is True


def test_cancel_stops_the_process_group(
    tracking: str, sqlite_server: Server, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    project = make_project(
        tmp_path / "sleeps",
        """\
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        with open(os.environ["PID_FILE"], "w") as f:
            f.write(str(child.pid))
        print("sleeping", flush=True)
        time.sleep(300)
        """,
    )
    submitted = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={**LOCAL, "ENV_VARS": {"PID_FILE": str(pid_file)}},
    )
    client = Client(sqlite_server.url)
    deadline = time.monotonic() + 60
    while b"sleeping" not in client.read_log(submitted.run_id)[0]:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.2)
    grandchild = int(pid_file.read_text())
    submitted.cancel()
    assert submitted.get_status() == "KILLED"
    assert client.get_job(submitted.run_id).status == JobStatus.CANCELED
    assert MlflowClient().get_run(submitted.run_id).info.status == "KILLED"
    deadline = time.monotonic() + 10
    while _alive(grandchild):
        assert time.monotonic() < deadline, "the entry point's child survived the cancel"
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its parent.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_mlflow_run_cli_reaches_a_final_status_on_its_own(
    tracking: str, sqlite_server: Server, tmp_path: Path
) -> None:
    config = tmp_path / "backend.json"
    config.write_text(json.dumps(LOCAL))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlflow",
            "run",
            str(EXAMPLE),
            "-b",
            "flowyard",
            "-c",
            str(config),
            "-P",
            "alpha=0.2",
            "-P",
            "steps=2",
            "--experiment-id",
            tracking,
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": sqlite_server.url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run = mlflow.search_runs([tracking], output_format="list")[0]
    assert run.data.params["alpha"] == "0.2"
    assert _wait_final(Client(sqlite_server.url), run.info.run_id) == JobStatus.COMPLETED
    assert MlflowClient().get_run(run.info.run_id).info.status == "FINISHED"


def test_resubmitting_unchanged_code_uploads_nothing(tracking: str, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "same", f"print('{tmp_path}')\n", files={"data/a.txt": f"{tmp_path}" * 100}
    )
    first = mlflow.projects.run(str(project), backend="flowyard", backend_config=LOCAL)
    second = mlflow.projects.run(str(project), backend="flowyard", backend_config=LOCAL)
    # MLproject may already be stored by another test: its content is the factory's default.
    assert first.snapshot.file_count == 3
    assert first.snapshot.uploaded_blobs >= 2
    assert second.snapshot.uploaded_blobs == 0
    assert second.snapshot.uploaded_bytes == 0
    assert second.snapshot.id == first.snapshot.id


BAD_INPUTS = [
    ({"entry_point": "nope"}, "has no entry point 'nope'"),
    ({"entry_point": "missing.py"}, "'missing.py' does not exist"),
    ({"parameters": {"alpha": "abc"}}, "Parameter 'alpha' must be a number"),
    ({"parameters": {"alpha": 0.1, "n": 1.5}}, "Parameter 'n' must be an integer"),
    ({"parameters": {"alpha": 0.1, "data": "/no/such/file"}}, "does not exist"),
    ({"parameters": {"alpha": 0.1, "src": "no-scheme"}}, "must be a URI with a scheme"),
    ({"backend_config": {"COMPUTES": "x"}}, "Unknown backend_config key(s) COMPUTES"),
    ({"backend_config": {"COMPUTE": "gpu-cluster"}}, "Unknown compute 'gpu-cluster'"),
    ({"backend_config": {"USE_CONDA": "maybe"}}, "USE_CONDA must be true or false"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS)
def test_bad_input_is_refused_before_anything_is_created(
    tracking: str, sqlite_server: Server, tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    project = make_project(
        tmp_path / "p",
        "print('never runs')\n",
        parameters="{alpha: float, n: {type: int, default: 1}, data: {type: path, default: .},"
        " src: {type: uri, default: 's3://b/k'}}",
        files={"unique.txt": f"unique {tmp_path}"},
    )
    _assert_refused(project, tracking, sqlite_server, kwargs, message)


def _assert_refused(
    project: Path, experiment_id: str, server: Server, kwargs: dict[str, object], message: str
) -> None:
    client = Client(server.url)
    jobs_before = len(client.list_jobs(limit=1000))
    call: dict[str, object] = {"parameters": {"alpha": 0.1}, "backend_config": LOCAL, **kwargs}
    with pytest.raises(FlowyardError) as err:
        mlflow.projects.run(str(project), backend="flowyard", **call)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert mlflow.search_runs([experiment_id], output_format="list") == []
    assert len(client.list_jobs(limit=1000)) == jobs_before
    digest = _sha256(project / "MLproject")
    assert client.request("POST", "/blobs/missing", json={"digests": [digest]})["missing"] == [
        digest
    ]


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_missing_parameter_malformed_mlproject_and_docker_env(
    tracking: str, sqlite_server: Server, tmp_path: Path
) -> None:
    needs = make_project(tmp_path / "needs", "", parameters="{alpha: float}")
    _assert_refused(
        needs,
        tracking,
        sqlite_server,
        {"parameters": {}},
        "No value given for missing parameters: 'alpha'",
    )
    broken = make_project(tmp_path / "broken", "")
    (broken / "MLproject").write_text("entry_points: [this, is, not, a, mapping\n")
    _assert_refused(broken, tracking, sqlite_server, {}, "cannot be used")
    # An image neither here nor pullable (or no engine at all): refused, nothing uploaded.
    missing = "localhost/flowyard-nowhere:1"
    docker = make_project(
        tmp_path / "docker", "", extra_mlproject=f"docker_env: {{image: {missing}}}"
    )
    _assert_refused(docker, tracking, sqlite_server, {}, "docker_env")


def test_tracking_uri_that_is_not_a_workspace(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", "print(1)\n")
    mlflow.set_tracking_uri((tmp_path / "mlruns").as_uri())
    try:
        with pytest.raises(
            NotAWorkspaceError,
            match="is not a Flowyard workspace; call "
            r"mlflow.set_tracking_uri\(Workspace.from_config\(\)",
        ):
            mlflow.projects.run(
                str(project), backend="flowyard", backend_config=LOCAL, experiment_id="0"
            )
    finally:
        mlflow.set_tracking_uri(None)
