"""A runner whose connection to the workspace is cut for a while mid-job (a proxy between them,
cut and restored) still ends its job as its entry point earned, with every log line once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import create_compute, final_job, make_project
from tests.proxy import TcpProxy
from tests.servers import Server, fast_workspace

LINES = 80


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Server]:
    # Heartbeats missed while cut must not count the runner lost: the timeout outlasts the cut.
    server = fast_workspace(tmp_path / "ws", env={"FLOWYARD_HEARTBEAT_TIMEOUT_S": "60"})
    yield server
    server.stop()


def test_a_job_cut_off_from_its_workspace_for_6_s_completes_with_every_line(
    workspace: Server, tmp_path: Path
) -> None:
    with TcpProxy(target_port=workspace.port) as proxy:
        create_compute(
            workspace, "behind-proxy", "--workspace-url", f"http://127.0.0.1:{proxy.port}"
        )
        project = make_project(
            tmp_path / "p",
            f"import time\nfor i in range({LINES}):\n    print(f'line {{i}}', flush=True)\n"
            "    time.sleep(0.1)\n",
        )
        mlflow.set_tracking_uri(workspace.url)
        # This workspace is new: an experiment an earlier test made active is not in it.
        mlflow.set_experiment("cut-off")
        try:
            run = mlflow.projects.run(
                str(project),
                backend="flowyard",
                synchronous=False,
                backend_config={"COMPUTE": "behind-proxy", "USE_CONDA": False},
            )
        finally:
            mlflow.set_tracking_uri(None)
        client = Client(workspace.url)
        deadline = time.monotonic() + 60
        while b"line 5\n" not in client.read_log(run.run_id)[0]:
            assert time.monotonic() < deadline, "the job never started logging"
            time.sleep(0.1)
        proxy.cut()
        time.sleep(6)
        proxy.restore()
        job = final_job(client, run.run_id)
    assert job.status == JobStatus.COMPLETED, job
    log = client.read_log(run.run_id)[0].decode().splitlines()
    assert [ln for ln in log if ln.startswith("line ")] == [f"line {i}" for i in range(LINES)]
