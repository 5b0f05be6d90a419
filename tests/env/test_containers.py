"""docker_env projects in real containers (Podman here, with this host's facts): tracked like
any job on this machine and on a process compute, with volumes, environment, outputs, a model,
a failing container, a cancel, a cached image, and clear errors before anything runs."""

from __future__ import annotations

import os
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException
from mlflow.projects.submitted_run import SubmittedRun

from flowyard import Workspace
from flowyard.client import Client
from flowyard.env import containers
from flowyard.schemas import JobStatus
from tests.factories import create_compute, final_job, make_project
from tests.images import base_image, engine_client_parent, engine_or_skip
from tests.servers import Server, fast_workspace, run_cli

QUIET = {"STREAM_OUTPUT": False}
TRAIN = """\
import os, sys
import mlflow

class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return [2 * x for x in model_input]

alpha = float(sys.argv[1])
print("in a container:", os.path.exists("/run/.containerenv") or os.path.exists("/.dockerenv"))
print("copied:", os.environ["COPIED_SECRET"])
with mlflow.start_run():
    mlflow.log_metric("score", alpha * 2)
    mlflow.log_text(open("/data/input.txt").read(), "seen.txt")
    os.makedirs("outputs", exist_ok=True)
    with open("outputs/greeting.txt", "w") as f:
        f.write(os.environ["GREETING"])
    mlflow.pyfunc.log_model(name="model", python_model=Doubler())
"""


@pytest.fixture(scope="module")
def engine() -> Iterator[containers.Engine]:
    found = engine_or_skip()
    yield found
    # The job images these tests made (each snapshot differs: its MLproject names tmp paths).
    containers.prune(found, None)


@pytest.fixture(scope="module")
def image(engine: containers.Engine) -> str:
    return base_image(engine)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("container-data")
    (folder / "input.txt").write_text("read through a volume")
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("container-cache")


@pytest.fixture
def tracking(
    sqlite_server: Server, tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("COPIED_SECRET", "s3cr3t-from-the-submitter")
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    yield mlflow.set_experiment(f"containers-{tmp_path.name}").experiment_id
    mlflow.set_tracking_uri(None)


def docker_project(
    root: Path,
    image: str,
    script: str = TRAIN,
    *,
    volumes: str = "[]",
    command: str = "python main.py {alpha}",
) -> Path:
    return make_project(
        root,
        script,
        command=command,
        extra_mlproject=textwrap.dedent(
            f"""\
            docker_env:
              image: {image}
              volumes: {volumes}
              environment: [["GREETING", "hello from the MLproject"], "COPIED_SECRET"]
            """
        ).replace("\n", "\n            "),
    )


def _log(run_id: str) -> str:
    return Path(MlflowClient().download_artifacts(run_id, "logs/std_log.txt")).read_text()


def _containers_of(engine: containers.Engine, job_id: str) -> list[str]:
    listed = engine.call("ps", "-a", "-q", "--filter", f"label={containers.LABEL_JOB}={job_id}")
    return listed.stdout.split()


def _check_tracked(run_id: str, engine: containers.Engine) -> str:
    """Asserts the run is tracked like any job's; returns its log."""
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["alpha"] == "0.25"
    assert run.data.metrics["score"] == 0.5
    assert run.data.tags["mlflow.project.env"] == "docker"
    assert run.data.tags["mlflow.docker.image.uri"].startswith(containers.IMAGE_REPO + ":")
    assert run.data.tags["mlflow.docker.image.id"]
    assert Path(client.download_artifacts(run_id, "seen.txt")).read_text() == (
        "read through a volume"
    )
    greeting = Path(client.download_artifacts(run_id, "outputs/greeting.txt")).read_text()
    assert greeting == "hello from the MLproject"
    [model] = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run_id}'", output_format="list"
    )
    assert list(mlflow.pyfunc.load_model(model.model_uri).predict([1, 2])) == [2, 4]
    log = _log(run_id)
    assert "in a container: True" in log
    # Copied from the submitting machine as a secret: masked in the log.
    assert "copied: ***" in log and "s3cr3t" not in log
    assert _containers_of(engine, run_id) == []
    return log


def test_a_docker_env_project_runs_here_then_reuses_its_image(
    tracking: str, tmp_path: Path, image: str, data: Path, engine: containers.Engine
) -> None:
    project = docker_project(tmp_path / "p", image, volumes=f'["{data}:/data:ro"]')
    first = mlflow.projects.run(
        str(project), parameters={"alpha": 0.25}, backend="flowyard", backend_config=QUIET
    )
    log = _check_tracked(first.run_id, engine)
    assert "environment: built image localhost/flowyard-job:" in log
    assert f"runc: cgroups are {containers.cgroup_layout()} here" in log or (
        containers.cgroup_layout() == "unified"
    )
    again = mlflow.projects.run(
        str(project), parameters={"alpha": 0.25}, backend="flowyard", backend_config=QUIET
    )
    log = _check_tracked(again.run_id, engine)
    assert "environment: reusing cached image localhost/flowyard-job:" in log
    # Pruned with the other caches: unused job images go, the base image stays.
    removed = containers.prune(engine, None)
    assert removed and all(t.startswith(containers.IMAGE_REPO) for t in removed)
    assert engine.call("image", "inspect", image).returncode == 0


def test_a_failing_container_fails_its_job_with_the_error(
    tracking: str, tmp_path: Path, image: str, engine: containers.Engine
) -> None:
    project = docker_project(tmp_path / "p", image, "raise ValueError('bad alpha')\n")
    run = mlflow.projects.run(
        str(project), backend="flowyard", backend_config=QUIET, synchronous=False
    )
    assert not run.wait()
    job = Client(mlflow.get_tracking_uri()).get_job(run.run_id)
    assert job.status == JobStatus.FAILED
    assert job.error is not None and job.error.type == "ValueError"
    assert job.error.message == "bad alpha"
    assert _containers_of(engine, run.run_id) == []
    # The container's stderr reaches the runner apart from its stdout: the traceback is marked.
    client = Client(mlflow.get_tracking_uri())
    found = client.http.get(
        f"{mlflow.get_tracking_uri()}/studio/jobs/{run.run_id}/log/search",
        params={"stderr": "true"},
    )
    stderr = [m["html"] for m in found.json()["matches"]]
    assert "ValueError: bad alpha" in stderr, stderr
    assert not any(line.startswith("[flowyard]") for line in stderr), stderr


def _waiting_job(tmp_path: Path, image: str) -> tuple[SubmittedRun, Client]:
    """A container job that prints "waiting" and sleeps, once it has printed it."""
    script = "import time\nprint('waiting', flush=True)\ntime.sleep(600)\n"
    project = docker_project(tmp_path / "p", image, script)
    run = mlflow.projects.run(
        str(project), backend="flowyard", backend_config=QUIET, synchronous=False
    )
    client = Client(mlflow.get_tracking_uri())
    deadline = time.monotonic() + 180
    while b"waiting" not in client.read_log(run.run_id)[0]:
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.2)
    return run, client


def test_cancel_stops_the_container(
    tracking: str, tmp_path: Path, image: str, engine: containers.Engine
) -> None:
    run, client = _waiting_job(tmp_path, image)
    assert _containers_of(engine, run.run_id)
    client.cancel_job(run.run_id)
    assert final_job(client, run.run_id).status == JobStatus.CANCELED
    assert _containers_of(engine, run.run_id) == []


def test_a_killed_runner_leaves_no_container_behind(
    tracking: str, tmp_path: Path, image: str, engine: containers.Engine
) -> None:
    run, _ = _waiting_job(tmp_path, image)
    runner = engine_client_parent(containers.container_name(run.run_id, 1))
    os.kill(runner, signal.SIGKILL)
    deadline = time.monotonic() + 180
    while _containers_of(engine, run.run_id):
        assert time.monotonic() < deadline, "the container outlived its runner"
        time.sleep(0.2)


def test_bad_input_is_refused_before_anything_runs(
    tracking: str, tmp_path: Path, image: str
) -> None:
    missing = docker_project(tmp_path / "missing", "localhost/flowyard-no-such-image:1")
    before = len(mlflow.search_runs([tracking], output_format="list"))
    with pytest.raises(
        ExecutionException, match="flowyard-no-such-image:1' named by the MLproject"
    ):
        mlflow.projects.run(str(missing), backend="flowyard", backend_config=QUIET)
    os.environ.pop("COPIED_SECRET")
    with pytest.raises(ExecutionException, match="copies COPIED_SECRET from this machine"):
        mlflow.projects.run(str(docker_project(tmp_path / "p", image)), backend="flowyard")
    assert len(mlflow.search_runs([tracking], output_format="list")) == before


@pytest.fixture(scope="module")
def process_server(tmp_path_factory: pytest.TempPathFactory, data: Path) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("container-process"))
    create_compute(server, "boxes", "--container-volume", str(data))
    yield server
    server.stop()


def test_a_docker_env_project_runs_on_a_process_compute(
    process_server: Server,
    tmp_path: Path,
    image: str,
    data: Path,
    engine: containers.Engine,
    cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COPIED_SECRET", "s3cr3t-from-the-submitter")
    mlflow.set_tracking_uri(Workspace.get(process_server.url).get_mlflow_tracking_uri())
    try:
        mlflow.set_experiment("containers-on-process")
        project = docker_project(tmp_path / "p", image, volumes=f'["{data}/:/data:ro"]')
        config = {**QUIET, "COMPUTE": "boxes"}
        run = mlflow.projects.run(
            str(project), parameters={"alpha": 0.25}, backend="flowyard", backend_config=config
        )
        _check_tracked(run.run_id, engine)
        # A volume outside the compute's folders, and an engine option beyond limits: refused.
        outside = docker_project(tmp_path / "o", image, volumes=f'["{cache}:/data"]')
        with pytest.raises(ExecutionException, match="which compute boxes does not allow"):
            mlflow.projects.run(str(outside), backend="flowyard", backend_config=config)
        with pytest.raises(ExecutionException, match="docker_args 'privileged' is not allowed"):
            mlflow.projects.run(
                str(project),
                backend="flowyard",
                backend_config=config,
                docker_args={"privileged": True},
            )
    finally:
        mlflow.set_tracking_uri(None)
    shown = run_cli("compute", "show", "boxes", env={"FLOWYARD_WORKSPACE_URL": process_server.url})
    assert f'"containers": "yes, with {engine.name}' in shown.stdout, shown.stdout
    assert str(data) in shown.stdout
