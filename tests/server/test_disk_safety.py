"""Disk safety end to end: a job's log is cut at the server's limit, marked where cut; a full
artifact store or blob cache (a small tmpfs mounted for the test) fails the job with a reason
that names the full file system, leaves nothing half-written, and the server and other jobs go
on; health warns before the store's disk is full."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import JobStatus
from flowyard.server.services.jobs import cut_mark
from tests.factories import final_job, make_project
from tests.servers import FAST, Server, auth_headers, free_port, init_workspace, mounted_tmpfs

LOCAL = {"USE_CONDA": False, "STREAM_OUTPUT": False}


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs of the test's own, unmounted afterwards."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    with mounted_tmpfs(folder, "2m"):
        yield folder


def _server(root: Path, *args: str) -> Server:
    port = free_port()
    init_workspace(root, port=port)
    return Server(args=list(args), cwd=root, port=port, env=FAST).start()


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield
    mlflow.set_tracking_uri(None)


def _run(server: Server, project: Path) -> str:
    mlflow.set_tracking_uri(server.url)
    mlflow.set_experiment("disks")
    submitted = mlflow.projects.run(
        uri=str(project), backend="flowyard", backend_config=LOCAL, synchronous=False
    )
    return str(submitted.run_id)


def test_a_log_is_cut_at_the_limit_and_marked_there(tmp_path: Path, tracking: None) -> None:
    server = _server(tmp_path / "ws", "--max-log-mb", "0.1")
    try:
        project = make_project(
            tmp_path / "p",
            "for i in range(6000):\n    print(f'line {i:05d} ' + 'x' * 40)\nprint('the end')\n",
            parameters="{}",
            command="python main.py",
        )
        with Client(server.url) as client:
            job_id = _run(server, project)
            job = final_job(client, job_id)
            assert job.status == JobStatus.COMPLETED  # the job goes on; its log does not
            log, _status, size = client.read_log(job_id)
            mark = cut_mark(100_000)
            assert size == len(log) == 100_000 + len(mark)
            assert log.endswith(mark) and b"line 00000" in log
            assert b"the end" not in log
            stored = MlflowClient(server.url).download_artifacts(
                job_id, "logs/std_log.txt", str(tmp_path / "dl")
            )
            assert Path(stored).read_bytes() == log
    finally:
        server.stop()


def test_a_full_artifact_store_fails_the_job_and_the_server_goes_on(
    tmp_path: Path, tmpfs: Path, tracking: None
) -> None:
    server = Server(
        args=["--db-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "--artifacts", str(tmpfs)],
        cwd=tmp_path,
        env=FAST,
    ).start()
    try:
        big = make_project(
            tmp_path / "big",
            "import os\nos.makedirs('outputs')\n"
            "open('outputs/big.bin', 'wb').write(os.urandom(3_000_000))\n",
            parameters="{}",
            command="python main.py",
        )
        with Client(server.url) as client:
            job_id = _run(server, big)
            job = final_job(client, job_id)
            assert job.status == JobStatus.FAILED
            assert job.error is not None
            assert f"The file system of {tmpfs} is full" in (job.error.message or "")
            assert not any(p.name == "big.bin" for p in tmpfs.rglob("*"))
            # The server serves, and says how full its store is.
            health = client.health()
            assert health["disks"]["artifact store"]["path"] == str(tmpfs)
            # An upload whose size is not announced fills the store midway: a 507, and no
            # truncated file left where readers would find it.
            run = MlflowClient(server.url).get_run(job_id)
            where = run.info.artifact_uri.removeprefix("mlflow-artifacts:/")

            def chunks() -> Iterator[bytes]:
                for _ in range(30):
                    yield os.urandom(100_000)

            answer = httpx.put(
                f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{where}/streamed.bin",
                content=chunks(),
                headers=auth_headers(server),
                timeout=60,
            )
            assert answer.status_code == 507, answer.text
            assert answer.json()["error_code"] == "STORAGE_FULL"
            assert not any(p.name == "streamed.bin" for p in tmpfs.rglob("*"))
            # Another job, which fits, completes.
            small = make_project(
                tmp_path / "small",
                "import os\nos.makedirs('outputs')\n"
                f"open('outputs/a.txt', 'w').write('{uuid.uuid4()}')\n",
                parameters="{}",
                command="python main.py",
            )
            other = _run(server, small)
            assert final_job(client, other).status == JobStatus.COMPLETED
            assert client.health()["status"] in ("ok", "warning")
    finally:
        server.stop()


def test_a_full_blob_cache_fails_the_job_naming_it(
    tmp_path: Path, tmpfs: Path, tracking: None
) -> None:
    cache = tmp_path / "cache" / "flowyard" / "blobs"
    cache.parent.mkdir(parents=True)
    cache.symlink_to(tmpfs)
    server = _server(tmp_path / "ws")
    try:
        big = make_project(
            tmp_path / "big", "print('never runs')\n", parameters="{}", command="python main.py"
        )
        (big / "data.bin").write_bytes(os.urandom(3_000_000))
        with Client(server.url) as client:
            job = final_job(client, _run(server, big))
            assert job.status == JobStatus.FAILED
            assert f"The file system of {cache} is full" in (job.error.message if job.error else "")
            assert [p for p in tmpfs.iterdir() if p.name.endswith(".part")] == []
            small = make_project(
                tmp_path / "small", "print('fits')\n", parameters="{}", command="python main.py"
            )
            assert final_job(client, _run(server, small)).status == JobStatus.COMPLETED
    finally:
        server.stop()


def test_health_warns_before_the_stores_disk_is_full(tmp_path: Path, tmpfs: Path) -> None:
    server = Server(
        args=["--db-url", f"sqlite:///{tmp_path / 'db.sqlite'}", "--artifacts", str(tmpfs)],
        cwd=tmp_path,
        env=FAST,
    ).start()
    try:
        with Client(server.url) as client:
            assert client.health()["status"] == "ok"
            filler = tmpfs / "filler"
            filler.write_bytes(b"\0" * 1_950_000)
            health = client.health()
            assert health["status"] == "warning"
            assert health["disks"]["artifact store"]["used_percent"] > 90
            (warning,) = health["warnings"]
            assert f"The disk of the artifact store ({tmpfs})" in warning
            filler.unlink()
            assert client.health()["status"] == "ok"
    finally:
        server.stop()
