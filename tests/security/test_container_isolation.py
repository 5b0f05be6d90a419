"""A hostile job on a process compute with isolation ``container`` reaches none of the server's
secrets (its database, secret key, config folder, environment, code, other jobs), neither from
its code in the container, nor from its environment's build on the host, nor through links it
leaves in ./outputs for its runner, which runs outside the container, to follow."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

import flowyard
from flowyard import paths
from flowyard.client import Client
from flowyard.env import containers
from flowyard.schemas import JobStatus
from tests.factories import create_compute, final_job, make_project
from tests.images import base_image, engine_or_skip
from tests.security.test_isolation import PROBE, SECRET_VALUE, SERVER_SECRET
from tests.servers import FAST, Server, free_port, init_workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    engine = engine_or_skip()
    image = base_image(engine)
    project = tmp_path_factory.mktemp("container-isolation")
    port = free_port()
    init_workspace(project, port=port)
    env = {
        **FAST,
        "XDG_CACHE_HOME": str(project / "cache"),
        "UV_CACHE_DIR": str(project / "uv-cache"),
        SERVER_SECRET: SECRET_VALUE,
    }
    server = Server(args=[], cwd=project, port=port, env=env).start()
    create_compute(server, "boxed", "--isolation", "container", "--isolation-image", image)
    yield server
    server.stop()
    containers.prune(engine, None)


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"container-isolation-{tmp_path.name}")
    yield Client(workspace.url)
    mlflow.set_tracking_uri(None)


def _run(project: Path, *parameters: str, use_conda: bool = False) -> str:
    run = mlflow.projects.run(
        str(project),
        parameters=dict(zip(("a", "b"), parameters, strict=False)),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "boxed", "USE_CONDA": use_conda, "STREAM_OUTPUT": False},
    )
    return str(run.run_id)


def _secrets(workspace: Server) -> tuple[dict[str, str], dict[str, str]]:
    ws, config = workspace.cwd / "ws", paths.config_dir()
    files = {
        "workspace database": str(ws / "flowyard.db"),
        "secret key": str(ws / "secret.key"),
        "credentials.json": str(config / "credentials.json"),
    }
    folders = {"workspace folder": str(ws), "config folder": str(config)}
    for path in [*files.values(), *folders.values()]:
        assert Path(path).exists(), path  # each probe aims at something that is there
    return files, folders


def test_a_job_in_the_container_reads_none_of_the_servers_secrets(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    assert workspace.proc is not None
    files, folders = _secrets(workspace)
    earlier = _run(make_project(tmp_path / "earlier", "print('hi')\n"))
    assert final_job(client, earlier).status == JobStatus.COMPLETED
    code = Path(flowyard.__file__).parent / "job_was_here.py"
    jobs = workspace.cwd / "cache" / "flowyard" / "jobs"
    script = PROBE.format(
        files=files, folders=folders, secret=SERVER_SECRET, jobs=str(jobs), code=str(code)
    )
    project = make_project(
        tmp_path / "probe",
        script,
        parameters="{a: {type: string}, b: {type: string}}",
        command="python main.py {a} {b}",
    )
    run_id = _run(project, str(workspace.proc.pid), SECRET_VALUE)
    job = final_job(client, run_id)
    assert job.status == JobStatus.COMPLETED, client.read_log(run_id)[0].decode()
    assert not code.exists()
    found = json.loads(
        Path(MlflowClient().download_artifacts(run_id, "outputs/found.json")).read_text()
    )
    assert set(found) >= {*files, *folders, "/proc/<server pid>/environ", "other jobs"}
    assert {name: got for name, got in found.items() if got is not None} == {}


def test_links_a_job_leaves_in_its_outputs_upload_nothing_of_the_host(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    """The runner uploads ./outputs from the host: a link the job made to a host path (one it
    cannot see, so a dangling one in its container) must not make the runner read that path.
    And the job, root in its container, has no capability to use on the host's network."""
    files, _ = _secrets(workspace)
    script = textwrap.dedent(
        f"""\
        import os
        os.makedirs("outputs/deeper", exist_ok=True)
        open("outputs/kept.txt", "w").write("mine")
        os.symlink({files["secret key"]!r}, "outputs/secret.key")
        os.symlink({files["workspace database"]!r}, "outputs/deeper/flowyard.db")
        os.symlink("/", "outputs/host")
        for line in open("/proc/self/status"):
            if line.startswith(("CapEff:", "CapBnd:", "NoNewPrivs:")):
                print(line.strip().replace("\t", " "))
        """
    )
    run_id = _run(make_project(tmp_path / "links", script))
    job = final_job(client, run_id)
    log = client.read_log(run_id)[0].decode()
    assert job.status == JobStatus.COMPLETED, log
    uploaded = [a.path for a in MlflowClient().list_artifacts(run_id, "outputs")]
    assert uploaded == ["outputs/kept.txt"]
    assert "left out 3 symbolic link(s) in ./outputs" in log
    # Root in the container without capabilities, and no way to gain one.
    assert "CapEff: 0000000000000000" in log and "CapBnd: 0000000000000000" in log
    assert "NoNewPrivs: 1" in log


def test_an_environment_build_sees_none_of_the_servers_secrets(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    """Building a package from source runs its code, on the host, where the runner is: the
    build runs in bubblewrap, which hides what the sandbox hides."""
    files, _ = _secrets(workspace)
    setup = textwrap.dedent(
        f"""\
        from setuptools import setup
        try:
            seen = open({files["secret key"]!r}, "rb").read().hex() or "nothing"
        except OSError as e:
            seen = type(e).__name__
        open({str(tmp_path / "seen")!r}, "w").write(seen)
        setup(name="peek", version="1.0", py_modules=[])
        """
    )
    project = make_project(
        tmp_path / "build",
        "print('built')\n",
        files={"peek/setup.py": setup},
    )
    (project / "python_env.yaml").write_text(
        'python: "3.11"\nbuild_dependencies: [setuptools]\ndependencies:\n  - ./peek\n'
    )
    run_id = _run(project, use_conda=True)
    job = final_job(client, run_id, timeout=600)
    assert job.status == JobStatus.COMPLETED, client.read_log(run_id)[0].decode()
    # The build ran (it wrote where builds may) and found no key: the workspace folder is
    # hidden whole (or, for a key kept elsewhere, an empty file in its place).
    secret = Path(files["secret key"]).read_bytes().hex()
    assert (tmp_path / "seen").read_text() in ("FileNotFoundError", "nothing")
    assert secret not in client.read_log(run_id)[0].decode()
