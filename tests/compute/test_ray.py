"""A `ray` compute against a real Ray cluster on loopback.

Run inside a network namespace that has only loopback (`make test-ray` does), because Ray swaps
`--node-ip-address 127.0.0.1` for the machine's address and listens on every interface. The
workspace server, the cluster and this test process share the namespace; PostgreSQL is not
reachable from there, so the workspace uses SQLite.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import ComputeOut, JobStatus
from tests.factories import EXAMPLE, final_job, hangs_on_first_attempt, make_project
from tests.parity import PARITY, run_both
from tests.servers import Server, fast_workspace, free_port, run_cli

pytestmark = pytest.mark.ray


def _loopback_only() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@pytest.fixture(scope="module")
def ray_dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _loopback_only():
        pytest.skip("Ray tests run only in a loopback-only network namespace: `make test-ray`")
    from ray.job_submission import JobSubmissionClient

    port, dashboard = free_port(), free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log = tmp_path_factory.mktemp("ray") / "ray.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                str(bin_dir / "ray"),
                "start",
                "--head",
                "--block",
                "--port",
                str(port),
                "--dashboard-port",
                str(dashboard),
                "--dashboard-host",
                "127.0.0.1",
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "2",
                "--disable-usage-stats",
                "--include-dashboard",
                "true",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 180
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            break
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise RuntimeError(f"Ray did not start:\n{log.read_text()}") from None
            time.sleep(1)
    yield address
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, ray_dashboard: str) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("ray-workspace"))
    result = run_cli(
        "compute",
        "create",
        "ray-cluster",
        "--type",
        "ray",
        "--address",
        ray_dashboard,
        "--python",
        sys.executable,
        "--num-cpus",
        "1",
        cwd=server.cwd,
        env={"FLOWYARD_WORKSPACE_URL": server.url},
    )
    assert result.returncode == 0, result.stderr
    yield server
    server.stop()


def test_the_remote_flow_on_ray(client: Client) -> None:
    run = mlflow.projects.run(
        str(EXAMPLE),
        parameters={"alpha": 0.3, "steps": 4},
        backend="flowyard",
        backend_config={"COMPUTE": "ray-cluster", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    job = client.get_job(run.run_id)
    assert job.status == JobStatus.COMPLETED
    assert job.external_id == f"flowyard-{run.run_id}-1"
    tracked = MlflowClient().get_run(run.run_id)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.params["alpha"] == "0.3"
    assert len(MlflowClient().get_metric_history(run.run_id, "rmse")) == 4
    names = {a.path for a in MlflowClient().list_artifacts(run.run_id, "outputs")}
    assert names == {"outputs/model.pkl", "outputs/metrics.json"}
    log = Path(MlflowClient().download_artifacts(run.run_id, "logs/std_log.txt")).read_text()
    assert "ElasticNet(alpha=0.3" in log


def test_mlflow_code_in_a_ray_job_does_what_it_does_locally(
    client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # MLflow's local backend runs the entry point with the `python` on PATH: this one's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    local, flowyard = run_both(PARITY, {"COMPUTE": "ray-cluster"})
    assert local["model_versions"] == [("1", "inner-train", "READY")]
    assert flowyard == local


def test_cancel_a_running_ray_job(client: Client, tmp_path: Path, ray_dashboard: str) -> None:
    from ray.job_submission import JobStatus as RayStatus
    from ray.job_submission import JobSubmissionClient

    project = make_project(
        tmp_path / "p", "import time\nprint('sleeping', flush=True)\ntime.sleep(300)\n"
    )
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "ray-cluster", "USE_CONDA": False},
    )
    deadline = time.monotonic() + 120
    while b"sleeping" not in client.read_log(run.run_id)[0]:
        assert time.monotonic() < deadline, "the Ray job never started its entry point"
        time.sleep(0.3)
    run.cancel()
    job = final_job(client, run.run_id)
    assert job.status == JobStatus.CANCELED
    assert MlflowClient().get_run(run.run_id).info.status == "KILLED"
    ray = JobSubmissionClient(ray_dashboard)
    deadline = time.monotonic() + 60
    while ray.get_job_status(job.external_id) not in (
        RayStatus.STOPPED,
        RayStatus.SUCCEEDED,
        RayStatus.FAILED,
    ):
        assert time.monotonic() < deadline, "the Ray job kept running after the cancel"
        time.sleep(0.5)


def test_ray_health_and_resources(workspace: Server) -> None:
    shown = ComputeOut.model_validate(
        Client(workspace.url).request("GET", "/computes/ray-cluster", params={"health": "true"})
    )
    assert shown.healthy is True
    assert shown.resources["nodes"] == 1
    assert shown.resources["cpus"] == 2


def test_a_killed_ray_runner_is_retried(client: Client, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"
    project = hangs_on_first_attempt(tmp_path / "p", marker)
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "ray-cluster", "USE_CONDA": False, "MAX_RETRIES": 1},
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert time.monotonic() < deadline
        time.sleep(0.2)
    runner = _ray_runner_pid(run.run_id)
    os.kill(runner, signal.SIGKILL)
    job = final_job(client, run.run_id)
    assert job.status == JobStatus.COMPLETED
    assert job.attempt == 2


def _ray_runner_pid(job_id: str) -> int:
    """The runner Ray started for the job's first attempt (found by its command line)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flowyard.runner" in cmdline and job_id.encode() in cmdline:
            return int(entry.name)
    raise AssertionError(f"no runner process for job {job_id}")


def test_a_sweep_runs_its_trials_on_ray(client: Client) -> None:
    """Sweeps run on a ray compute as on a process one: the trials are Ray jobs, nested under
    the sweep's run, which holds the best."""
    project = Path(__file__).resolve().parents[1] / "projects" / "sweep"
    run = mlflow.projects.run(
        str(project),
        parameters={"y": -1, "steps": 2},
        backend="flowyard",
        backend_config={
            "COMPUTE": "ray-cluster",
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "SWEEP": {
                "search_space": {"x": {"type": "choice", "values": [1, 2, 4]}},
                "sampling": "grid",
                "objective": {"metric": "loss"},
                "limits": {"max_concurrent_trials": 2},
            },
        },
    )
    sweep = client.get_sweep(run.run_id)
    assert sweep.job.status == JobStatus.COMPLETED
    assert [t.parameters["x"] for t in sweep.trials] == ["2", "1", "4"]
    assert all(client.get_job(t.run_id).external_id for t in sweep.trials)
    parent = MlflowClient().get_run(run.run_id)
    assert parent.data.params["x"] == "2" and parent.data.metrics["loss"] == 0.0


def test_a_docker_env_project_runs_in_a_container_on_a_ray_node(
    client: Client, tmp_path: Path
) -> None:
    from tests.images import base_image, engine_or_skip

    image = base_image(engine_or_skip())
    script = (
        "import os, mlflow\n"
        "print('in a container:', os.path.exists('/run/.containerenv'))\n"
        "mlflow.log_metric('score', float(os.environ['SCORE']))\n"
    )
    project = make_project(
        tmp_path / "p",
        script,
        parameters="{}",
        command="python main.py",
        extra_mlproject=f'docker_env: {{image: {image}, environment: [["SCORE", "0.5"]]}}',
    )
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        backend_config={"COMPUTE": "ray-cluster", "STREAM_OUTPUT": False},
    )
    tracked = MlflowClient().get_run(run.run_id)
    assert tracked.info.status == "FINISHED"
    assert tracked.data.metrics["score"] == 0.5
    assert tracked.data.tags["mlflow.project.env"] == "docker"
    log = Path(MlflowClient().download_artifacts(run.run_id, "logs/std_log.txt")).read_text()
    assert "in a container: True" in log
    shown = client.get_compute("ray-cluster")
    assert shown.containers is not None and "its runner starts the container" in shown.containers
