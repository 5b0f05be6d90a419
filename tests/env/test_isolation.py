"""A process compute with isolation ``container`` (real Podman, the tests' Debian base image):
every job, whatever its environment, runs in a container of the compute's image, tracked like
any job, seeing none of the host's files but its own folder and its environment; a cancel stops
the container; bad settings and images are refused in one sentence."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard.client import Client
from flowyard.env import containers
from flowyard.errors import EnvBuildError
from flowyard.schemas import JobStatus
from tests.factories import create_compute, final_job, make_project
from tests.images import base_image, engine_client_parent, engine_or_skip
from tests.servers import Server, fast_workspace, run_cli

# What the job tells of where it runs: a file of the test's (outside every mount) and whether it
# is in a container; then params, a metric, an artifact and outputs, as any job.
PROBE = """\
import argparse, os, sys
import mlflow

parser = argparse.ArgumentParser()
parser.add_argument("--alpha", type=float)
parser.add_argument("--marker")
args = parser.parse_args()

def seen(path):
    try:
        return open(path).read().strip()
    except OSError as e:
        return type(e).__name__

print("marker:", seen(args.marker), flush=True)
print("in a container:", os.path.exists("/run/.containerenv"))
print("python:", sys.executable)
{extra}
with mlflow.start_run():
    mlflow.log_metric("score", args.alpha * 2)
    mlflow.log_text("made inside", "inside.txt")
os.makedirs("outputs", exist_ok=True)
with open("outputs/greeting.txt", "w") as f:
    f.write("hello from the container")
"""
PARAMETERS = "{alpha: {type: float, default: 0.5}, marker: {type: string}}"
COMMAND = "python main.py --alpha {alpha} --marker {marker}"


@pytest.fixture(scope="module")
def engine() -> containers.Engine:
    return engine_or_skip()


@pytest.fixture(scope="module")
def image(engine: containers.Engine) -> str:
    return base_image(engine)


@pytest.fixture(scope="module")
def workspace(
    tmp_path_factory: pytest.TempPathFactory, image: str, engine: containers.Engine
) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("isolation-container")
    # uv's downloads shared by the module's builds (the workspace's cache is its own).
    server = fast_workspace(folder, env={"UV_CACHE_DIR": str(folder / "uv-cache")})
    create_compute(server, "boxed", "--isolation", "container", "--isolation-image", image)
    create_compute(server, "sandboxed")
    mlflow.set_tracking_uri(server.url)
    yield server
    mlflow.set_tracking_uri(None)
    server.stop()
    containers.prune(engine, None)


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Client:
    mlflow.set_experiment(f"isolation-{tmp_path.name}")
    return Client(workspace.url)


def _project(root: Path, *, python_env: bool = True, extra: str = "") -> Path:
    project = make_project(root, PROBE.format(extra=extra), parameters=PARAMETERS, command=COMMAND)
    if python_env:
        (project / "python_env.yaml").write_text('python: "3.11"\ndependencies:\n  - six\n')
    return project


def _run(project: Path, compute: str, marker: Path, *, use_conda: bool = True) -> str:
    run = mlflow.projects.run(
        str(project),
        parameters={"alpha": 0.25, "marker": str(marker)},
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": compute, "USE_CONDA": use_conda, "STREAM_OUTPUT": False},
    )
    return str(run.run_id)


def _log(client: Client, run_id: str) -> str:
    return client.read_log(run_id)[0].decode()


def _containers_of(engine: containers.Engine, job_id: str) -> list[str]:
    listed = engine.call("ps", "-a", "-q", "--filter", f"label={containers.LABEL_JOB}={job_id}")
    return listed.stdout.split()


def _marker(tmp_path: Path) -> Path:
    marker = tmp_path / "host-only.txt"
    marker.write_text("a file of the host's")
    return marker


def test_a_python_env_project_runs_in_the_computes_image_tracked_like_any_job(
    client: Client, tmp_path: Path, image: str, engine: containers.Engine
) -> None:
    marker = _marker(tmp_path)
    run_id = _run(_project(tmp_path / "p"), "boxed", marker)
    job = final_job(client, run_id, timeout=600)
    log = _log(client, run_id)
    assert job.status == JobStatus.COMPLETED, log
    run = MlflowClient().get_run(run_id)
    assert run.data.params["alpha"] == "0.25"
    assert run.data.metrics["score"] == 0.5
    assert run.data.tags["mlflow.project.env"] == "uv"
    artifacts = MlflowClient()
    assert Path(artifacts.download_artifacts(run_id, "inside.txt")).read_text() == "made inside"
    greeting = Path(artifacts.download_artifacts(run_id, "outputs/greeting.txt")).read_text()
    assert greeting == "hello from the container"
    # In a container of the image, the environment built on the host and mounted.
    assert f"isolation: a container of {image}" in log
    assert "in a container: True" in log
    assert "environment: built" in log and "any build runs in a bubblewrap sandbox" in log
    python = next(li.split(": ", 1)[1] for li in log.splitlines() if li.startswith("python: "))
    assert "/flowyard/envs/" in python
    # None of the host's files but its mounts: not the test's file.
    assert "marker: FileNotFoundError" in log
    assert _containers_of(engine, run_id) == []


def test_the_same_project_on_a_sandboxed_compute_sees_the_hosts_file(
    client: Client, tmp_path: Path
) -> None:
    """The control: the probe does see the file where the job is not in a container."""
    marker = _marker(tmp_path)
    run_id = _run(_project(tmp_path / "p"), "sandboxed", marker)
    assert final_job(client, run_id, timeout=600).status == JobStatus.COMPLETED
    log = _log(client, run_id)
    assert "marker: a file of the host's" in log and "in a container: False" in log


def test_a_project_without_an_environment_runs_in_the_runners_python_mounted(
    client: Client, tmp_path: Path
) -> None:
    marker = _marker(tmp_path)
    run_id = _run(_project(tmp_path / "p", python_env=False), "boxed", marker, use_conda=False)
    job = final_job(client, run_id)
    log = _log(client, run_id)
    assert job.status == JobStatus.COMPLETED, log
    assert "in a container: True" in log and "marker: FileNotFoundError" in log
    assert MlflowClient().get_run(run_id).data.metrics["score"] == 0.5


def _waiting_job(client: Client, tmp_path: Path) -> str:
    """A job in the container that prints "waiting" and sleeps, once it has printed it."""
    extra = "import time; print('waiting', flush=True); time.sleep(600)"
    project = _project(tmp_path / "p", python_env=False, extra=extra)
    run_id = _run(project, "boxed", tmp_path, use_conda=False)
    deadline = time.monotonic() + 180
    while "waiting" not in _log(client, run_id):
        assert time.monotonic() < deadline, "the container never started"
        time.sleep(0.2)
    return run_id


def test_cancel_stops_the_container(
    client: Client, tmp_path: Path, engine: containers.Engine
) -> None:
    run_id = _waiting_job(client, tmp_path)
    assert _containers_of(engine, run_id)
    client.cancel_job(run_id)
    assert final_job(client, run_id).status == JobStatus.CANCELED
    assert _containers_of(engine, run_id) == []


def test_a_killed_runner_leaves_no_container_behind(
    client: Client, tmp_path: Path, engine: containers.Engine
) -> None:
    run_id = _waiting_job(client, tmp_path)
    os.kill(engine_client_parent(containers.container_name(run_id, 1)), signal.SIGKILL)
    deadline = time.monotonic() + 180
    while _containers_of(engine, run_id):
        assert time.monotonic() < deadline, "the container outlived its runner"
        time.sleep(0.2)
    assert final_job(client, run_id).status == JobStatus.FAILED


def test_a_command_the_image_cannot_run_says_so(client: Client, tmp_path: Path, image: str) -> None:
    project = make_project(tmp_path / "p", "", command="no-such-program --alpha {alpha}")
    run_id = _run(project, "boxed", tmp_path, use_conda=False)
    job = final_job(client, run_id)
    assert job.status == JobStatus.FAILED and job.error is not None
    assert job.error.type == "ContainerError" and job.error.exit_code == 127
    assert job.error.message.startswith(
        f"A command was not found in the compute's isolation image {image} ("
    )
    assert "no-such-program: command not found)" in job.error.message


def _cli(workspace: Server, *args: str) -> tuple[int, str]:
    result = run_cli(*args, cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url})
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--isolation-image", "debian:12"), "applies to --isolation container only"),
        (("--isolation", "container"), "--isolation container needs --isolation-image"),
        (("--isolation", "container", "--isolation-image", "-v"), "is not an image name"),
        (
            ("--isolation", "container", "--isolation-image", "localhost/flowyard-none:1"),
            "is not on this host and cannot be pulled",
        ),
    ],
)
def test_bad_settings_are_refused_before_the_compute_exists(
    workspace: Server, args: tuple[str, ...], error: str
) -> None:
    code, said = _cli(workspace, "compute", "create", "refused", "--type", "process", *args)
    assert code != 0 and error in said, said
    code, _ = _cli(workspace, "compute", "show", "refused")
    assert code != 0


def test_an_image_the_runner_cannot_pull_fails_the_job_before_it_runs(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    """A name a registry could have is left to the runner (a pull may take minutes): where
    none answers, the job fails with the same sentence, and its code never ran."""
    missing = "registry.invalid/flowyard/none:1"
    code, said = _cli(
        workspace,
        "compute",
        "create",
        "unpulled",
        "--type",
        "process",
        "--isolation",
        "container",
        "--isolation-image",
        missing,
    )
    assert code == 0, said
    run_id = _run(_project(tmp_path / "p", python_env=False), "unpulled", tmp_path, use_conda=False)
    job = final_job(client, run_id)
    assert job.status == JobStatus.FAILED
    assert job.error is not None
    assert f"The image '{missing}' named by this compute's --isolation-image" in job.error.message
    assert "cannot be pulled" in job.error.message
    assert "marker:" not in _log(client, run_id)


def test_a_compute_whose_engine_does_not_answer_is_refused(workspace: Server, image: str) -> None:
    try:
        containers.engine("docker")
    except EnvBuildError:
        pass
    else:
        pytest.skip("docker answers on this host")
    code, said = _cli(
        workspace,
        *("compute", "create", "dockerless", "--type", "process", "--isolation", "container"),
        *("--isolation-image", image, "--container-engine", "docker"),
    )
    assert code != 0
    assert "Compute dockerless cannot run containers: No container engine works" in said, said
    assert "(docker is not installed" in said or "(docker does not work" in said


def test_an_image_gone_since_the_compute_was_made_is_refused_at_submit(
    client: Client, workspace: Server, tmp_path: Path, image: str, engine: containers.Engine
) -> None:
    gone = f"localhost/flowyard-test-gone:{tmp_path.name.lower()}"
    assert engine.call("tag", image, gone).returncode == 0
    code, said = _cli(
        workspace,
        *("compute", "create", "gone", "--type", "process", "--isolation", "container"),
        *("--isolation-image", gone),
    )
    assert code == 0, said
    assert engine.call("rmi", gone).returncode == 0
    before = len(mlflow.search_runs(output_format="list"))
    project = _project(tmp_path / "p", python_env=False)
    with pytest.raises(ExecutionException, match=f"The image '{gone}' named by compute gone's"):
        _run(project, "gone", tmp_path, use_conda=False)
    assert len(mlflow.search_runs(output_format="list")) == before


def test_a_docker_env_job_runs_in_its_own_image_pulled_by_its_runner(
    client: Client, tmp_path: Path
) -> None:
    """On an isolation container compute too; and its image, not here but with a registry's
    name, is left to the runner to pull rather than pulled inside the submit request."""
    project = make_project(
        tmp_path / "p",
        "print('ran')\n",
        extra_mlproject="docker_env:\n              image: registry.invalid/team/train:1",
        parameters=PARAMETERS,
        command=COMMAND,
    )
    run_id = _run(project, "boxed", tmp_path, use_conda=False)
    job = final_job(client, run_id)
    assert job.status == JobStatus.FAILED and job.error is not None
    assert "'registry.invalid/team/train:1' named by the MLproject's docker_env" in (
        job.error.message
    )
    assert "isolation: a container of" not in _log(client, run_id)


def test_compute_show_states_the_isolation_and_update_leaves_it(
    workspace: Server, image: str
) -> None:
    code, said = _cli(workspace, "compute", "show", "boxed")
    assert code == 0, said
    shown = json.loads(said)
    assert shown["isolation"].startswith(f"container: every job runs in a container of {image}")
    assert shown["settings"]["isolation_image"] == image
    assert shown["healthy"] is True, shown["health"]
    _cli(
        workspace,
        "compute",
        "create",
        "moved",
        "--type",
        "process",
        "--isolation",
        "container",
        "--isolation-image",
        image,
    )
    code, said = _cli(workspace, "compute", "update", "moved", "--isolation", "sandbox")
    assert code == 0, said
    shown = json.loads(said)
    assert "isolation_image" not in shown["settings"]
    assert shown["isolation"].startswith("sandbox: bubblewrap")
