"""The chaos suite's cuts: the database away from the workspace, or the workspace away from its
runners, for 2, 6 and 30 s while jobs are submitted, run and finish. Every job ends as its entry
point earned, on its first attempt, with every log line once; no run is left without its job."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.chaos.workload import workload
from tests.factories import create_compute, final_job, hangs_on_first_attempt
from tests.proxy import TcpProxy
from tests.servers import Server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.parametrize("seconds", [2, 6, 30])
def test_a_database_cut_fails_no_good_job_and_loses_no_line(
    cut_database: tuple[Server, TcpProxy], tmp_path: Path, seconds: int
) -> None:
    server, proxy = cut_database
    with workload(server, tmp_path, "pool") as (load, client):
        for code in (0, 3, 0, 0):
            load.submit(code)
        # One on this machine too: no compute vouches for its runner while it cannot beat.
        load.submit(0, compute="local")
        # And one whose runner dies just before the cut: it is retried around it.
        marker = tmp_path / "attempts"
        retried = mlflow.projects.run(
            str(hangs_on_first_attempt(tmp_path / "retried", marker)),
            backend="flowyard",
            synchronous=False,
            experiment_id=load.experiment,
            backend_config={"COMPUTE": "pool", "USE_CONDA": False, "MAX_RETRIES": 1},
        ).run_id
        load.submitted()
        load.wait_running(client)
        os.killpg(os.getpgid(_runner_pid(client, retried, marker)), signal.SIGKILL)
        proxy.cut()
        # Submitted while the database is away: each waits, retried, until it is back.
        load.submit(0)
        load.submit(3)
        time.sleep(seconds)
        proxy.restore()
        load.check(client, MlflowClient(), also=[retried])
        job = final_job(client, retried)
        assert (job.status, job.attempt) == (JobStatus.COMPLETED, 2), job.events
        assert client.read_log(retried)[0].decode().count("second attempt done") == 1


def _runner_pid(client: Client, run_id: str, started: Path, timeout: float = 120) -> int:
    """The pid of the job's runner (its sandbox's first process) once its entry point has
    created ``started``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(run_id)
        if job.status == JobStatus.RUNNING and job.external_id and started.exists():
            return int(job.external_id.split(":")[1])
        time.sleep(0.1)
    raise AssertionError(f"job {run_id} never started running")


@pytest.mark.parametrize("seconds", [2, 6, 30])
def test_runners_cut_off_from_the_workspace_end_their_jobs_as_earned(
    cut_database: tuple[Server, TcpProxy], tmp_path: Path, seconds: int
) -> None:
    """Their heartbeats stop for longer than the heartbeat timeout (4 s here); the compute
    still sees them alive, so they are waited for, not counted lost and run again."""
    server, _ = cut_database
    with TcpProxy(target_port=server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        create_compute(server, "far", "--workspace-url", url, "--max-concurrent-jobs", "3")
        with workload(server, tmp_path, "far") as (load, client):
            load.start(client, 0, 3, 0)
            proxy.cut()
            time.sleep(seconds)
            proxy.restore()
            load.check(client, MlflowClient())
