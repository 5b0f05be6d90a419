"""A job on a `process` compute runs on the workspace host, but never reaches the server's secrets:
its database, secret key, config folder and credentials, its environment, its code, or other
jobs."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import flowyard
from flowyard import paths
from flowyard.client import Client
from flowyard.compute import sandbox
from flowyard.schemas import JobStatus
from flowyard.server.services import computes
from flowyard.server.settings import ServerSettings
from tests.factories import create_compute, final_job, make_project
from tests.servers import FAST, Server, free_port, init_workspace, run_cli

SERVER_SECRET = "FLOWYARD_TEST_SERVER_SECRET"
SECRET_VALUE = "server-only-7f3a9c"

# Each probe tries one way to the server's secrets; a value other than None is what got through.
PROBE = """\
import json, os, sys
import mlflow

server_pid, secret_value, files, folders = sys.argv[1], sys.argv[2], {files!r}, {folders!r}
code = {code!r}
found = {{}}

def attempt(name, fn):
    try:
        found[name] = fn()
    except OSError as e:
        found[name] = None
        print(f"{{name}}: {{type(e).__name__}}", flush=True)

def read(path):
    data = open(path, "rb").read()
    return data[:40].decode(errors="replace") or None

def environ():
    data = open(f"/proc/{{server_pid}}/environ", "rb").read()
    return "the server's environment" if secret_value.encode() in data else None

for name, path in files.items():
    attempt(name, lambda: read(path))
for name, path in folders.items():
    attempt(name, lambda: sorted(os.listdir(path)) or None)
attempt("/proc/<server pid>/environ", environ)

def rewrite():
    with open(code, "w") as f:
        f.write("# a job was here\\n")
    return code

attempt("the server's code", rewrite)
for name in ("_MLFLOW_SERVER_FILE_STORE", "FLOWYARD_SERVER_SETTINGS", "FLOWYARD_SECRET_KEY",
             "{secret}"):
    found["$" + name] = os.environ.get(name)
found["other jobs"] = sorted(set(os.listdir({jobs!r})) - {{os.environ["MLFLOW_RUN_ID"]}}) or None
mlflow.log_metric("probed", len(found))
os.makedirs("outputs", exist_ok=True)
json.dump(found, open("outputs/found.json", "w"))
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    project = tmp_path_factory.mktemp("isolation")
    port = free_port()
    init_workspace(project, port=port)
    env = {**FAST, "XDG_CACHE_HOME": str(project / "cache"), SERVER_SECRET: SECRET_VALUE}
    server = Server(args=[], cwd=project, port=port, env=env).start()
    yield server
    server.stop()


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"isolation-{tmp_path.name}")
    yield Client(workspace.url)
    mlflow.set_tracking_uri(None)


def _compute(workspace: Server, name: str, *args: str) -> None:
    create_compute(workspace, name, *args)


def _run(project: Path, compute: str, *parameters: str) -> str:
    run = mlflow.projects.run(
        str(project),
        parameters=dict(zip(("a", "b"), parameters, strict=False)),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": compute, "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    return str(run.run_id)


def test_a_sandboxed_job_reads_none_of_the_servers_secrets(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    assert workspace.proc is not None
    ws = workspace.cwd / "ws"
    config = paths.config_dir()
    jobs = workspace.cwd / "cache" / "flowyard" / "jobs"
    files = {
        "workspace database": str(ws / "flowyard.db"),
        "secret key": str(ws / "secret.key"),
        "credentials.json": str(config / "credentials.json"),
    }
    folders = {"workspace folder": str(ws), "config folder": str(config)}
    for path in [*files.values(), *folders.values()]:
        assert Path(path).exists(), path  # each probe aims at something that is there
    _compute(workspace, "sandboxed")
    # Another job's folder, which the probe must not see either.
    earlier = _run(make_project(tmp_path / "earlier", "print('hi')\n"), "sandboxed")
    assert final_job(client, earlier).status == JobStatus.COMPLETED
    # A new module in the server's own package: what the server would import after a restart.
    code = Path(flowyard.__file__).parent / "job_was_here.py"
    script = PROBE.format(
        files=files, folders=folders, secret=SERVER_SECRET, jobs=str(jobs), code=str(code)
    )
    project = make_project(
        tmp_path / "probe",
        script,
        parameters="{a: {type: string}, b: {type: string}}",
        command="python main.py {a} {b}",
    )
    run_id = _run(project, "sandboxed", str(workspace.proc.pid), SECRET_VALUE)
    job = final_job(client, run_id)
    assert job.status == JobStatus.COMPLETED, client.read_log(run_id)[0].decode()
    assert MlflowClient().get_run(run_id).data.metrics["probed"] > 0
    found = json.loads(
        Path(MlflowClient().download_artifacts(run_id, "outputs/found.json")).read_text()
    )
    code.unlink(missing_ok=True)
    probes = {*files, *folders, "/proc/<server pid>/environ", "the server's code", "other jobs"}
    assert set(found) >= probes
    assert {name: got for name, got in found.items() if got is not None} == {}


def test_compute_show_says_what_isolation_a_compute_gives(workspace: Server) -> None:
    _compute(workspace, "shown")
    result = run_cli(
        "compute", "show", "shown", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["isolation"].startswith("sandbox: bubblewrap")
    assert shown["healthy"] is True
    local = run_cli(
        "compute", "show", "local", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert "submitting user" in json.loads(local.stdout)["isolation"]


def test_without_bubblewrap_a_sandboxed_compute_runs_nothing_and_says_why(
    tmp_path: Path,
) -> None:
    """A host where bwrap is not found: jobs fail with the fix, rather than run unsandboxed."""
    port = free_port()
    init_workspace(tmp_path, port=port)
    # This Python and bash (the runner starts entry points with it), but no bwrap.
    tools = tmp_path / "bin"
    tools.mkdir()
    (tools / "bash").symlink_to(shutil.which("bash") or "/bin/bash")
    path = os.pathsep.join([str(Path(sys.executable).parent), str(tools)])
    env = {**FAST, "XDG_CACHE_HOME": str(tmp_path / "cache"), "PATH": path}
    server = Server(args=[], cwd=tmp_path, port=port, env=env).start()
    try:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("no-bubblewrap")
        _compute(server, "sandboxed")
        marker = tmp_path / "ran"
        project = make_project(tmp_path / "p", f"open({str(marker)!r}, 'w').close()\n")
        run_id = _run(project, "sandboxed")
        job = final_job(Client(server.url), run_id)
        assert job.status == JobStatus.FAILED
        assert job.error is not None and "apt-get install bubblewrap" in job.error.message
        assert "--isolation none" in job.error.message
        assert not marker.exists()
        shown = run_cli(
            "compute", "show", "sandboxed", cwd=tmp_path, env={"FLOWYARD_WORKSPACE_URL": server.url}
        )
        health = json.loads(shown.stdout)
        assert health["healthy"] is False and "bubblewrap" in health["health"]

        _compute(server, "open", "--isolation", "none")
        run_id = _run(project, "open")
        assert final_job(Client(server.url), run_id).status == JobStatus.COMPLETED
        assert marker.exists()
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()


# --- the pure parts ----------------------------------------------------------------------------


def test_a_runner_gets_the_allowed_variables_and_its_own_never_the_servers() -> None:
    server = {
        "PATH": "/usr/bin",
        "HOME": "/home/ops",
        "LC_ALL": "C.UTF-8",
        "UV_INDEX_URL": "https://mirror/simple",
        "PIP_FIND_LINKS": "/opt/wheels",
        "OPENBLAS_CORETYPE": "Haswell",
        "https_proxy": "http://proxy:3128",
        "XDG_CACHE_HOME": "/var/cache/ops",
        "FLOWYARD_HEARTBEAT_S": "2",
        "_MLFLOW_SERVER_FILE_STORE": "postgresql://flowyard:pw@db/flowyard",
        "_MLFLOW_SERVER_ARTIFACT_DESTINATION": "s3://bucket",
        "FLOWYARD_SERVER_SETTINGS": '{"db_url": "..."}',
        "FLOWYARD_SECRET_KEY": "k",
        "FLOWYARD_TOKEN": "fyo_owner",
        "MLFLOW_TRACKING_TOKEN": "fyo_owner",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "PGPASSWORD": "pw",
        SERVER_SECRET: SECRET_VALUE,
    }
    env = sandbox.runner_env(server, {"FLOWYARD_TOKEN": "fyj_job"})
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/ops",
        "LC_ALL": "C.UTF-8",
        "UV_INDEX_URL": "https://mirror/simple",
        "PIP_FIND_LINKS": "/opt/wheels",
        "OPENBLAS_CORETYPE": "Haswell",
        "https_proxy": "http://proxy:3128",
        "XDG_CACHE_HOME": "/var/cache/ops",
        "FLOWYARD_HEARTBEAT_S": "2",
        "FLOWYARD_TOKEN": "fyj_job",
    }
    assert all(reason for reason in sandbox.PASSED.values())


def _pairs(args: list[str], flag: str, width: int = 1) -> list[list[str]]:
    return [args[i + 1 : i + 1 + width] for i, a in enumerate(args) if a == flag]


def test_the_sandbox_hides_each_private_path_once_and_other_jobs() -> None:
    ws, config, jobs = Path("/srv/ws"), Path("/root/.config/flowyard"), Path("/c/flowyard/jobs")
    args = sandbox.bwrap_argv(
        [ws, config, ws / "artifacts"],
        [ws / "secret.key", Path("/etc/flowyard/secret.key")],
        jobs,
        jobs / "run1",
        writable=[Path("/tmp")],
        devices=[Path("/dev/nvidia0")],
        root=False,
    )
    # The host read-only, with a minimal /dev and /proc of its own; then what jobs write.
    assert args[:5] == ["--ro-bind", "/", "/", "--dev", "/dev"]
    assert _pairs(args, "--dev-bind", 2) == [["/dev/nvidia0"] * 2]
    assert _pairs(args, "--proc") == [["/proc"]]
    assert _pairs(args, "--bind", 2) == [["/tmp", "/tmp"], [str(jobs / "run1")] * 2]
    assert _pairs(args, "--tmpfs") == [[str(config)], [str(ws)], [str(jobs)]]
    assert _pairs(args, "--ro-bind", 2) == [
        ["/", "/"],
        ["/dev/null", "/etc/flowyard/secret.key"],
    ]
    # Other jobs go before this job's folder comes back.
    assert args.index(str(jobs)) < args.index(str(jobs / "run1"))
    assert {"--unshare-pid", "--unshare-ipc"} <= set(args)
    # The runner must stay in the group a cancel signals, and outlive a server restart.
    assert "--new-session" not in args and "--die-with-parent" not in args
    assert "--cap-drop" not in args
    assert _pairs(sandbox.bwrap_argv([], [], jobs, jobs / "r", root=True), "--cap-drop") == [
        ["ALL"]
    ]


_ARITY = {"--ro-bind": 2, "--bind": 2, "--dev-bind": 2, "--cap-drop": 1, "--tmpfs": 1}
_ARITY |= {"--dev": 1, "--proc": 1, "--chdir": 1}


def _mounts(args: list[str]) -> list[tuple[str, str]]:
    """(option, the path it mounts over), in bubblewrap's order."""
    found, i = [], 0
    while i < len(args):
        width = _ARITY.get(args[i], 0)
        if width and args[i] != "--cap-drop":
            found.append((args[i], args[i + width]))
        i += 1 + width
    return found


def test_what_the_runner_needs_inside_a_hidden_folder_stays_but_not_what_is_private() -> None:
    home = Path("/home/ops")
    cache, key, venv = home / ".cache", home / ".cache" / "secret.key", home / "venv"
    args = sandbox.bwrap_argv([home], [key], cache / "jobs", cache / "jobs" / "r", [venv], [cache])
    mounts = [m for m in _mounts(args) if m[1] not in ("/", "/dev", "/proc")]
    assert mounts == [
        ("--bind", str(cache)),  # what jobs write
        ("--tmpfs", str(home)),  # hidden over it
        ("--bind", str(cache)),  # shown again
        ("--ro-bind", str(venv)),  # the runner's Python, read-only
        ("--ro-bind", str(key)),  # what is private in what was shown, hidden again
        ("--tmpfs", str(cache / "jobs")),
        ("--bind", str(cache / "jobs" / "r")),
        ("--chdir", str(cache / "jobs" / "r")),
    ]


def test_the_private_paths_of_a_folder_workspace_and_of_a_database_elsewhere(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "workspace.json").write_text("{}")
    folder = ServerSettings(
        workspace_name="w",
        db_url=f"sqlite:///{ws / 'flowyard.db'}",
        artifacts_destination=str(ws / "artifacts"),
        secret_key_file=str(ws / "secret.key"),
    )
    assert set(computes.private_paths(folder)) == {
        str(paths.config_dir()),
        str(ws),
        str(ws / "secret.key"),
        str(ws / "artifacts"),
    }
    elsewhere = ServerSettings(
        workspace_name="w",
        db_url=f"sqlite:///{tmp_path / 'data' / 'f.db'}",
        artifacts_destination="s3://bucket/artifacts",
        secret_key_file=str(paths.config_dir() / "secret.key"),
    )
    assert set(computes.private_paths(elsewhere)) == {
        str(paths.config_dir()),
        str(paths.config_dir() / "secret.key"),
        *(str(tmp_path / "data" / f"f.db{end}") for end in ("", "-wal", "-shm", "-journal")),
    }


def test_the_servers_code_stays_read_only_under_a_writable_folder() -> None:
    """A server run from a folder in /tmp (as CI's clone is): jobs write /tmp, not its code."""
    tmp, code, jobs = Path("/tmp"), Path("/tmp/clone/flowyard"), Path("/c/jobs")
    args = sandbox.bwrap_argv([], [], jobs, jobs / "r", writable=[tmp], code=[code, Path("/opt")])
    mounts = [m for m in _mounts(args) if m[1] not in ("/", "/dev", "/proc")]
    assert mounts[:2] == [("--bind", str(tmp)), ("--ro-bind", str(code))]
    assert ("--ro-bind", "/opt") not in mounts  # read-only already, with the rest of the host
