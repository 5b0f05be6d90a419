"""Fixtures of the chaos suite: a workspace on PostgreSQL whose database connection runs through
a proxy the test cuts, with a process compute and short timeouts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import create_compute
from tests.proxy import TcpProxy
from tests.servers import FAST, Server

# Half-done submissions and ends are settled this soon: a test waits for them.
REPAIR_AFTER_S = 3
CHAOS_ENV = {**FAST, "FLOWYARD_REPAIR_AFTER_S": str(REPAIR_AFTER_S)}


def pg_replica(db_url: str, folder: Path, port: int | None = None) -> Server:
    """A server on ``db_url`` (its runners' cache in ``folder``), with a process compute."""
    folder.mkdir(parents=True, exist_ok=True)
    server = Server(
        args=["--db-url", db_url, "--artifacts", str(folder / "artifacts"), "--name", "chaos"],
        cwd=folder,
        env={**CHAOS_ENV, "XDG_CACHE_HOME": str(folder / "cache")},
    )
    if port is not None:
        server.port = port
    return server.start()


@pytest.fixture
def cut_database(postgres_empty_db: str, tmp_path: Path) -> Iterator[tuple[Server, TcpProxy]]:
    """A workspace whose PostgreSQL connection the test can cut, with a `pool` compute."""
    with TcpProxy(target_port=5432) as proxy:
        db_url = postgres_empty_db.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        server = pg_replica(db_url, tmp_path / "ws")
        try:
            create_compute(server, "pool", "--max-concurrent-jobs", "3")
            yield server, proxy
        finally:
            server.stop()
