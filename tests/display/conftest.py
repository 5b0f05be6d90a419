"""A real terminal for tests: a tmux server of the test's own, on a private socket."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import create_compute
from tests.servers import Server, fast_workspace


class Tmux:
    """One tmux session, 200 columns by 50 lines, running bash; commands are typed into it."""

    def __init__(self, socket: str, record: Path) -> None:
        self.socket = socket
        self.record = record

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def start(self, cwd: Path, env: dict[str, str]) -> None:
        """Open the session in ``cwd``, its shell given ``env``; record all it prints."""
        subprocess.run(
            [
                *("tmux", "-L", self.socket, "-f", "/dev/null", "new-session", "-d"),
                *("-x", "200", "-y", "50", "-s", "main", "-c", str(cwd), "bash --noprofile --norc"),
            ],
            env=env,
            check=True,
        )
        self.tmux("pipe-pane", "-o", "-t", "main", f"cat >> {self.record}")

    def type(self, command: str) -> None:
        self.tmux("send-keys", "-t", "main", command, "Enter")

    def screen(self) -> str:
        """What the pane shows, its scrollback included, wrapped lines joined."""
        return self.tmux("capture-pane", "-p", "-J", "-S", "-", "-t", "main")

    def recorded(self) -> str:
        """Every byte the pane was sent, escape sequences and overwritten frames included."""
        return self.record.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            if m := re.search(pattern, self.screen()):
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not on the screen:\n{self.screen()}")
            time.sleep(0.2)


def terminal_env(**extra: str) -> dict[str, str]:
    """The environment of a shell a user opened: this venv's commands on PATH, none of the
    MLflow state this test process gathered."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MLFLOW_EXPERIMENT_ID", "MLFLOW_TRACKING_URI", "TMUX", "COLUMNS", "LINES"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PS1"] = "$ "
    return {**env, **extra}


@pytest.fixture
def tmux_terminal(tmp_path: Path) -> Iterator[Tmux]:
    """A terminal to ``start``; its tmux server is killed after the test."""
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed; `make test` installs it (apt-get install tmux)")
    socket = f"flowyard-test-{uuid.uuid4().hex[:12]}"
    terminal = Tmux(socket, tmp_path / "terminal.raw")
    yield terminal
    where = subprocess.run(
        ["tmux", "-L", socket, "display-message", "-p", "#{socket_path}"],
        capture_output=True,
        text=True,
        check=False,
    )
    subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True, check=False)
    if where.returncode == 0 and where.stdout.strip():
        Path(where.stdout.strip()).unlink(missing_ok=True)  # a killed server leaves its socket


@pytest.fixture(scope="package")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A workspace with a compute of one slot (for queues) and a `cpu-cluster` of two."""
    server = fast_workspace(tmp_path_factory.mktemp("display"))
    create_compute(server, "one-slot", "--max-concurrent-jobs", "1")
    create_compute(server, "cpu-cluster", "--max-concurrent-jobs", "2")
    yield server
    server.stop()
