"""Two jobs of one snapshot on one host, at once: one rewrites a project file in place, the other
still reads the original, and so does a later job (the runners' blob cache is unchanged)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import final_job, make_project, process_workspace
from tests.servers import Server

# B starts first and says so; A waits for that, rewrites data.txt in place (the same inode) and
# says so; B then reads its own data.txt. Every wait is bounded.
SCRIPT = """\
import os, sys, time
role, gates = sys.argv[1], sys.argv[2]

def wait(name):
    deadline = time.time() + 60
    while not os.path.exists(os.path.join(gates, name)):
        assert time.time() < deadline, f"no {name}"
        time.sleep(0.05)

if role == "b":
    open(os.path.join(gates, "b-ready"), "w").close()
    wait("a-wrote")
elif role == "a":
    wait("b-ready")
    with open("data.txt", "r+b") as f:
        f.write(b"REWRITTEN BY A")
    open(os.path.join(gates, "a-wrote"), "w").close()
print("data.txt:", open("data.txt").read(), flush=True)
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Unsandboxed: a sandbox's job folder is a mount of its own, which no hard link crosses, so
    # only runners without one ever shared a file with the cache.
    server = process_workspace(
        tmp_path_factory.mktemp("isolation"),
        "two",
        "--max-concurrent-jobs",
        "2",
        "--isolation",
        "none",
    )
    mlflow.set_tracking_uri(server.url)
    # Its own experiment: an earlier test's active one is not in this workspace.
    mlflow.set_experiment("isolation")
    try:
        yield server
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()


def _submit(project: Path, role: str, gates: Path) -> str:
    run = mlflow.projects.run(
        str(project),
        parameters={"role": role, "gates": str(gates)},
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "two", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    return str(run.run_id)


def _log(client: Client, run_id: str) -> str:
    return client.read_log(run_id)[0].decode()


def test_a_rewrite_in_place_reaches_no_other_job(workspace: Server, tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "p",
        SCRIPT,
        parameters="{role: string, gates: string}",
        command="python main.py {role} {gates}",
        files={"data.txt": "original content"},
    )
    gates = tmp_path / "gates"
    gates.mkdir()
    with Client(workspace.url) as client:
        b = _submit(project, "b", gates)
        a = _submit(project, "a", gates)
        assert client.get_job(a).snapshot_id == client.get_job(b).snapshot_id
        assert final_job(client, a).status == JobStatus.COMPLETED, _log(client, a)
        assert final_job(client, b).status == JobStatus.COMPLETED, _log(client, b)
        assert "data.txt: REWRITTEN BY A" in _log(client, a)
        assert "data.txt: original content" in _log(client, b)
        later = _submit(project, "later", gates)
        assert final_job(client, later).status == JobStatus.COMPLETED
        assert "data.txt: original content" in _log(client, later)
