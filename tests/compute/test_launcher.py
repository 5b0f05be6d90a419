"""The launcher's rules: the runner's arguments and environment on each compute, and detaching."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from flowyard.compute import launcher
from flowyard.compute.base import RunnerCommand
from flowyard.credentials import ENV_TOKEN
from flowyard.server.services import replicas

SERVER_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/ops",
    "LC_ALL": "C.UTF-8",
    "FLOWYARD_HEARTBEAT_S": "2",
    "UV_INDEX_URL": "https://pypi.internal/simple",
    "FLOWYARD_SERVER_SETTINGS": '{"db_url": "postgresql://flowyard:pw@db/flowyard"}',
    "FLOWYARD_SECRET_KEY": "server-key",
    "AWS_SECRET_ACCESS_KEY": "cloud-key",
    ENV_TOKEN: "fyo_the_operator",
}


def test_the_runner_command_line_names_the_workspace_and_job_and_never_the_token() -> None:
    command = RunnerCommand("j1", 1, "http://ws:5000", token="fyj_secret")
    args = launcher.runner_args("http://ws:5000", "j1")
    assert args == ["-m", "flowyard.runner", "--workspace", "http://ws:5000", "--job", "j1"]
    assert command.argv == args and "fyj_secret" not in " ".join(command.argv)
    assert command.env == {ENV_TOKEN: "fyj_secret"}
    assert RunnerCommand("j1", 1, "http://ws:5000").env == {}


def test_a_runner_is_given_the_other_replicas_after_its_workspace() -> None:
    command = RunnerCommand("j1", 1, "http://lb:5000", fallback_urls=("http://a:5000",))
    assert command.argv == [
        *("-m", "flowyard.runner", "--workspace", "http://lb:5000"),
        *("--workspace", "http://a:5000", "--job", "j1"),
    ]
    seen = ["http://a:5000/", "http://lb:5000", "http://b:5000", "http://a:5000"]
    assert replicas.fallbacks("http://lb:5000/", seen) == ("http://a:5000", "http://b:5000")
    assert replicas.fallbacks("http://a:5000", ["http://a:5000"]) == ()


def test_a_process_runner_gets_the_allow_list_and_its_job_token_only() -> None:
    env = launcher.process_env(SERVER_ENV, "fyj_job")
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/ops",
        "LC_ALL": "C.UTF-8",
        "FLOWYARD_HEARTBEAT_S": "2",
        "UV_INDEX_URL": "https://pypi.internal/simple",
        ENV_TOKEN: "fyj_job",
    }


def test_a_local_runner_gets_the_submitting_users_whole_environment() -> None:
    env = launcher.local_env(SERVER_ENV, "fyj_job")
    assert env == {**SERVER_ENV, ENV_TOKEN: "fyj_job"}
    assert launcher.local_env({"HOME": "/h"}, None) == {"HOME": "/h"}


def test_spawn_detaches_into_a_session_of_its_own(tmp_path: Path) -> None:
    out = tmp_path / "runner.out"
    code = "import os; print(os.getsid(0), os.environ['ONLY'])"
    proc = launcher.spawn([sys.executable, "-c", code], {"ONLY": "this"}, out)
    assert proc.wait(timeout=30) == 0
    deadline = time.monotonic() + 5
    while not out.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    session, only = out.read_text().split()
    assert int(session) == proc.pid != os.getsid(0) and only == "this"
