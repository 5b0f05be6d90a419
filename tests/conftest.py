"""Fixtures: real workspace servers (SQLite, and PostgreSQL when one answers) on free ports. The
helpers that start them are in tests/servers.py."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers import Server, fresh_postgres_database, new_workspace

if TYPE_CHECKING:
    from tests.proxy import TcpProxy

# Tokens and secret keys of this session's workspaces, never the user's own: every server's owner
# token is saved here for its URL (as `flowyard workspace init` does), and every client in and
# out of this process finds it there.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="flowyard-tests-config-")
# Runners record MLflow's system metrics for no job but those that ask (tests/studio/
# test_charts.py, tests/runner/test_system_metrics.py): the monitor imports MLflow into every
# runner, seconds of CPU a job on a 2-core CI machine, for metrics no other test reads.
os.environ["MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"] = "false"


def pytest_sessionfinish() -> None:
    shutil.rmtree(os.environ["XDG_CONFIG_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = new_workspace(tmp_path_factory.mktemp("sqlite-project"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A PostgreSQL database shared by this test session's server, dropped afterwards."""
    yield from fresh_postgres_database()


@pytest.fixture
def postgres_empty_db() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    yield from fresh_postgres_database()


@pytest.fixture(scope="session")
def postgres_server(postgres_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    project = tmp_path_factory.mktemp("pg-project")
    artifacts = project / "artifacts"
    server = Server(
        args=["--db-url", postgres_db, "--artifacts", str(artifacts), "--name", "pg"],
        cwd=project,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def cuttable_postgres_server(
    postgres_empty_db: str, tmp_path: Path
) -> Iterator[tuple[Server, TcpProxy]]:
    """A server whose PostgreSQL connection runs through a proxy the test cuts and restores."""
    from tests.proxy import TcpProxy

    with TcpProxy(target_port=5432) as proxy:
        db_url = postgres_empty_db.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        server = Server(
            args=["--db-url", db_url, "--artifacts", str(tmp_path / "artifacts"), "--name", "cut"],
            cwd=tmp_path,
        ).start()
        try:
            yield server, proxy
        finally:
            server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest) -> Server:
    """The workspace server on each kind of database."""
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
    fixture: Server = request.getfixturevalue(f"{request.param}_server")
    return fixture
