"""Helpers that start and drive real workspace servers for tests: free ports, the CLI as a new
shell runs it, `flowyard server` processes stopped by their pid, workspaces, and PostgreSQL
databases of their own."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from flowyard.credentials import find_token

FLOWYARD = [sys.executable, "-m", "flowyard.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    input: str | None = None,
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
        input=input,
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


def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped when the generator ends; skips the test when none
    answers."""
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


# Short timeouts, so a lost runner is noticed in seconds rather than a minute.
FAST = {
    "FLOWYARD_HEARTBEAT_TIMEOUT_S": "4",
    "FLOWYARD_RECONCILE_INTERVAL_S": "1",
    "FLOWYARD_DISPATCH_INTERVAL_S": "0.2",
}


def fast_workspace(project: Path, env: dict[str, str] | None = None) -> Server:
    """A new workspace in ``project``, served with short timeouts (and ``env``) and its own
    runner cache."""
    return new_workspace(
        project, env={**FAST, "XDG_CACHE_HOME": str(project / "cache"), **(env or {})}
    )


@contextmanager
def tracking(server: Server) -> Iterator[Server]:
    """``server`` as MLflow's tracking URI (its client finds the workspace's saved token for
    it) while inside; stopped, and MLflow pointed nowhere, after."""
    import mlflow

    mlflow.set_tracking_uri(server.url)
    try:
        yield server
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()


@contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` (mount's notation, e.g. ``2m``) mounted on the existing empty
    ``folder``, unmounted afterwards; skips the test where mounting is refused."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)
