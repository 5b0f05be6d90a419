"""The chaos suite on SQLite: the database locked by another process, and the disk under it full,
for a few seconds while jobs run. Every job ends as its entry point earned, once, with every
log line; the server answers throughout."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.chaos.workload import workload
from tests.factories import create_compute
from tests.servers import (
    FAST,
    Server,
    auth_headers,
    fast_workspace,
    free_port,
    init_workspace,
    mounted_tmpfs,
)

pytestmark = pytest.mark.slow

HOLD_S = 8


def test_a_locked_database_fails_no_good_job(tmp_path: Path) -> None:
    server = fast_workspace(tmp_path / "proj")
    try:
        create_compute(server, "pool", "--max-concurrent-jobs", "3")
        with workload(server, tmp_path, "pool") as (load, client):
            load.start(client, 0, 3, 0)
            # Another program takes the database's write lock and holds it.
            lock = sqlite3.connect(tmp_path / "proj" / "ws" / "flowyard.db", timeout=30)
            lock.execute("BEGIN EXCLUSIVE")
            load.submit(0)
            time.sleep(HOLD_S)
            lock.rollback()
            lock.close()
            load.check(client, MlflowClient())
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty 64 MB file system of its own (tmpfs), unmounted afterwards."""
    folder = tmp_path / "proj" / "ws"
    folder.mkdir(parents=True)
    with mounted_tmpfs(folder, "64m"):
        yield folder


def _fill(folder: Path) -> Path:
    """Fill the file system under ``folder`` to the last byte; returns the filler."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 20))
                out.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_under_the_database_fails_no_good_job(small_disk: Path, tmp_path: Path) -> None:
    port = free_port()
    init_workspace(tmp_path / "proj", port=port)  # its folder is the small file system
    env = {**FAST, "XDG_CACHE_HOME": str(tmp_path / "cache")}  # the runners' off it
    server = Server(args=[], cwd=tmp_path / "proj", port=port, env=env).start()
    try:
        create_compute(server, "pool", "--max-concurrent-jobs", "3")
        with workload(server, tmp_path, "pool") as (load, client):
            load.start(client, 0, 3, 0)
            filler = _fill(small_disk)
            answers: list[int] = []
            probe = threading.Thread(
                target=lambda: answers.append(
                    httpx.get(f"{server.url}/api/flowyard/v1/health", timeout=10).status_code
                )
            )
            probe.start()
            refused = httpx.post(
                f"{server.url}/api/flowyard/v1/computes",
                json={"name": "late", "type": "process"},
                headers=auth_headers(server),
                timeout=60,
            )
            assert refused.status_code == 503, refused.text
            assert "no space left on its disk" in refused.json()["message"]
            time.sleep(HOLD_S)
            probe.join()
            filler.unlink()
            assert answers == [200], "the server stopped answering"
            load.check(client, MlflowClient())
        assert server.log is not None
        assert "database or disk is full" in server.log.read_text(), "the disk was never full"
    finally:
        server.stop()
