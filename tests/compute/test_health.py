"""Health checks run in the server's background, so a compute that hangs never holds up a page."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowyard.compute.base import ComputeTarget, ExternalState, Health, RunnerCommand
from flowyard.defaults import API_PREFIX
from flowyard.server.services.computes import HealthChecks
from tests.servers import Server, fast_workspace, run_cli

# Far below the 30 s a Ray health call waits on a dashboard that never answers.
CLIENT_TIMEOUT_S = 5.0


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never answers on them."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Server]:
    server = fast_workspace(tmp_path, {"FLOWYARD_HEALTH_INTERVAL_S": "1"})
    yield server
    server.stop()


def _create(workspace: Server, name: str, *args: str) -> None:
    env = {"FLOWYARD_WORKSPACE_URL": workspace.url}
    result = run_cli("compute", "create", name, *args, cwd=workspace.cwd, env=env)
    assert result.returncode == 0, result.stderr


def test_a_hung_compute_does_not_hold_up_the_computes_pages(
    workspace: Server, silent_port: int
) -> None:
    _create(workspace, "hung", "--type", "ray", "--address", f"http://127.0.0.1:{silent_port}")
    _create(workspace, "cpu", "--type", "process", "--isolation", "none")
    with httpx.Client(
        base_url=workspace.url,
        headers={"Authorization": f"Bearer {workspace.token}"},
        timeout=CLIENT_TIMEOUT_S,
    ) as http:
        time.sleep(1.5)  # the background loop has started the hung check by now
        listed = http.get(f"{API_PREFIX}/computes")
        assert listed.status_code == 200
        shown = http.get(f"{API_PREFIX}/computes/hung", params={"health": "true"})
        assert shown.status_code == 200
        assert shown.json()["healthy"] is None
        assert shown.json()["health"] == "not checked yet"
        assert http.get("/studio/computes").status_code == 200

        # The other compute's check is not held up by the hung one, and says when it was made.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            cpu = http.get(f"{API_PREFIX}/computes/cpu").json()
            if cpu["health_checked_at"]:
                break
            time.sleep(0.2)
        assert cpu["healthy"] is True and cpu["health_checked_at"], cpu

    shown_by_cli = run_cli(
        "compute", "show", "cpu", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert shown_by_cli.returncode == 0, shown_by_cli.stderr
    assert '"health_checked": "' in shown_by_cli.stdout


def test_local_answers_as_a_compute(workspace: Server) -> None:
    result = run_cli(
        "compute", "show", "local", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert result.returncode == 0, result.stderr
    assert '"type": "local"' in result.stdout and "submitting user" in result.stdout


class _Blocking(ComputeTarget):
    """A compute whose health check waits until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__("blocking")
        self.release = threading.Event()
        self.calls = 0

    def submit(self, command: RunnerCommand) -> str:
        raise NotImplementedError

    def poll(self, external_id: str) -> ExternalState:
        raise NotImplementedError

    def cancel(self, external_id: str) -> None:
        raise NotImplementedError

    @property
    def isolation_detail(self) -> str:
        return "none"

    def health(self) -> Health:
        self.calls += 1
        self.release.wait(30)
        return Health(True, "answered")


def test_a_check_runs_once_at_a_time_and_a_reader_never_waits_past_its_bound() -> None:
    checks, target = HealthChecks(), _Blocking()
    assert checks.fresh(target, 0.05) is None
    running = checks.refresh(target)
    assert checks.refresh(target) is running
    target.release.set()
    assert running.wait(10)
    found = checks.last(target)
    assert found is not None and found.health.detail == "answered" and target.calls == 1
    assert checks.last(_Blocking()) is None  # another target (new settings) starts unchecked
