"""Fixtures: real workspace servers (SQLite, and PostgreSQL when one answers) on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from flowyard.credentials import find_token

if TYPE_CHECKING:
    from tests.proxy import TcpProxy

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
FLOWYARD = [sys.executable, "-m", "flowyard.cli"]

# Tokens and secret keys of this session's workspaces, never the user's own: every server's owner
# token is saved here for its URL (as `flowyard workspace init` does), and every client in and
# out of this process finds it there.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="flowyard-tests-config-")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # A command typed in a new shell: none of the MLflow state this test process gathered
    # (MLflow's set_experiment exports MLFLOW_EXPERIMENT_ID for child processes).
    inherited = {k: v for k, v in os.environ.items() if k != "MLFLOW_EXPERIMENT_ID"}
    return subprocess.run(
        [*FLOWYARD, *args],
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass
class Server:
    """A `flowyard server` process started by a test, stopped by its pid."""

    args: list[str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    log: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    # The owner token saved for this server's URL when its workspace was created.
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> Server:
        self.log = self.cwd / f"server-{self.port}.log"
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(
                [*FLOWYARD, "server", *self.args, "--port", str(self.port)],
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
                env={**os.environ, **self.env},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/api/flowyard/v1/health", timeout=2).status_code == 200:
                    self.token = find_token(self.url)
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not answer in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the server's whole process group, as a crash would."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 30) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def auth_headers(server: Server) -> dict[str, str]:
    """The header that carries ``server``'s owner token."""
    return {"Authorization": f"Bearer {server.token}"} if server.token else {}


def init_workspace(project: Path, name: str = "tests", port: int | None = None) -> Path:
    """`flowyard workspace init` in ``project``; returns the workspace folder."""
    project.mkdir(parents=True, exist_ok=True)
    folder = project / "ws"
    args = ["workspace", "init", str(folder), "--name", name]
    if port is not None:
        args += ["--url", f"http://127.0.0.1:{port}"]
    result = run_cli(*args, cwd=project)
    assert result.returncode == 0, result.stderr
    return folder


def new_workspace(project: Path, env: dict[str, str] | None = None) -> Server:
    """A new workspace in ``project``, served on a free port (with ``env`` added)."""
    port = free_port()
    init_workspace(project, port=port)
    return Server(args=[], cwd=project, port=port, env=env or {}).start()


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = new_workspace(tmp_path_factory.mktemp("sqlite-project"))
    yield server
    server.stop()


def postgres_available() -> str | None:
    """None when PostgreSQL answers at 127.0.0.1:5432, else the reason it cannot be used."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'flowyard[postgres]')"
    try:
        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ):
            return None
    except psycopg.Error as e:
        return f"no PostgreSQL answers at 127.0.0.1:5432 ({str(e).strip()})"


def _fresh_postgres_database() -> Iterator[str]:
    reason = postgres_available()
    if reason:
        pytest.skip(reason)
    import psycopg

    name = f"flowyard_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_db() -> Iterator[str]:
    """A PostgreSQL database shared by this test session's server, dropped afterwards."""
    yield from _fresh_postgres_database()


@pytest.fixture
def postgres_empty_db() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test."""
    yield from _fresh_postgres_database()


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
