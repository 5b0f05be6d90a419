"""Job environments built with uv from python_env.yaml or conda.yaml: fresh, cached, shared,
never half-built, with clear errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard import Workspace
from flowyard.client import Client
from flowyard.env import builder
from flowyard.env.spec import from_conda_yaml, from_python_env
from flowyard.errors import InterpreterNotFoundError, InvalidRequestError
from flowyard.schemas import JobStatus
from tests.conftest import Server
from tests.factories import EXAMPLE, make_project

BUILD = {"USE_CONDA": True, "STREAM_OUTPUT": False}
SHOW_ENV = """\
import sys, mlflow
print("EXECUTABLE", sys.executable)
import six
print("SIX", six.__version__)
"""


@pytest.fixture(scope="module")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """uv's download cache, shared by this module's builds: each Flowyard env is still built new,
    but packages are fetched from the registry once."""
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def tracking(
    sqlite_server: Server, tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    mlflow.set_tracking_uri(Workspace.get(sqlite_server.url).get_mlflow_tracking_uri())
    yield mlflow.set_experiment(f"env-{tmp_path.name}").experiment_id
    mlflow.set_tracking_uri(None)


def _python_env_project(root: Path, deps: list[str], python: str = "3.11") -> Path:
    project = make_project(root, SHOW_ENV, parameters="{}", command="python main.py")
    text = f'python: "{python}"\ndependencies:\n' + "".join(f"  - {d}\n" for d in deps)
    (project / "python_env.yaml").write_text(text)
    return project


def _log(run_id: str) -> str:
    return Path(MlflowClient().download_artifacts(run_id, "logs/std_log.txt")).read_text()


def _executable(log: str) -> Path:
    return Path(
        next(line.split(" ", 1)[1] for line in log.splitlines() if line.startswith("EXECUTABLE "))
    )


def test_a_new_env_then_the_cached_one(tracking: str, tmp_path: Path) -> None:
    project = _python_env_project(tmp_path / "p", ["six==1.16.0"])
    first = mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    log = _log(first.run_id)
    env_python = _executable(log)
    envs = tmp_path / "cache" / "flowyard" / "envs"
    assert env_python.is_relative_to(envs), log
    assert env_python.parent.parent != Path(sys.prefix)
    assert "SIX 1.16.0" in log
    assert "environment: built" in log
    assert "adding mlflow-skinny==" in log  # the project did not ask for MLflow
    assert MlflowClient().get_run(first.run_id).data.tags["mlflow.project.env"] == "uv"

    second = mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    log = _log(second.run_id)
    assert "environment: reusing cached" in log
    assert "Installed" not in log  # uv did not run
    assert _executable(log) == env_python


def test_two_concurrent_jobs_build_one_env_once(
    tracking: str, tmp_path: Path, sqlite_server: Server
) -> None:
    project = _python_env_project(tmp_path / "p", ["six==1.16.0", "idna==3.10"])
    runs = [
        mlflow.projects.run(
            str(project), backend="flowyard", backend_config=BUILD, synchronous=False
        )
        for _ in range(2)
    ]
    assert all(r.wait() for r in runs)
    logs = [_log(r.run_id) for r in runs]
    assert sum("environment: built" in log for log in logs) == 1
    assert sum("environment: reusing cached" in log for log in logs) == 1
    envs = [p for p in (tmp_path / "cache" / "flowyard" / "envs").iterdir() if p.is_dir()]
    assert len(envs) == 1


_BUILD_AND_HANG = """
import sys, time
from flowyard.env import builder
spec = {"manager": "uv", "source": "python_env.yaml", "python": None,
        "build_dependencies": [], "dependencies": ["six==1.16.0"]}
builder.ensure(spec, sys.argv[1], lambda b: (sys.stdout.buffer.write(b), sys.stdout.flush()))
"""


def test_a_build_killed_midway_is_never_reused(
    tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    envs = tmp_path / "cache" / "flowyard" / "envs"
    proc = subprocess.Popen(
        [sys.executable, "-c", _BUILD_AND_HANG, mlflow.__version__],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not any(
        p.name.startswith(".build-") and (p / "bin" / "python").exists()
        for p in (envs.iterdir() if envs.exists() else [])
    ):
        assert time.monotonic() < deadline and proc.poll() is None, "the build never started"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    leftovers = [p for p in envs.iterdir() if p.name.startswith(".build-")]
    assert leftovers and not [p for p in envs.iterdir() if p.is_dir() and p not in leftovers]

    spec = {
        "manager": "uv",
        "source": "python_env.yaml",
        "python": None,
        "build_dependencies": [],
        "dependencies": ["six==1.16.0"],
    }
    env = builder.ensure(spec, mlflow.__version__, lambda _: None)
    assert env.built
    check = subprocess.run(
        [str(env.python), "-c", "import six, mlflow; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "1.16.0"
    assert set(builder.prune(unused_days=30)) == {p.name for p in leftovers}
    assert [e.key for e in builder.list_envs()] == [env.path.name]


def test_conda_yaml_without_conda(tracking: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", SHOW_ENV, parameters="{}", command="python main.py")
    (project / "conda.yaml").write_text(
        "name: x\nchannels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n"
        "  - pip:\n      - six==1.16.0\n"
    )
    submitted = mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    log = _log(submitted.run_id)
    assert "SIX 1.16.0" in log
    assert "environment: conda.yaml (Python 3.11)" in log


def test_python_the_compute_lacks_is_refused_up_front(
    tracking: str, tmp_path: Path, sqlite_server: Server
) -> None:
    """The Azure sample's conda.yaml says python=3.6."""
    project = make_project(tmp_path / "p", "print(1)\n", parameters="{}", command="python main.py")
    (project / "conda.yaml").write_text(
        "name: azure-sample\ndependencies:\n  - python=3.6\n  - scikit-learn\n"
        "  - pip:\n      - mlflow\n"
    )
    jobs_before = len(Client(sqlite_server.url).list_jobs(limit=1000))
    with pytest.raises(InterpreterNotFoundError) as err:
        mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    message = str(err.value)
    assert "asks for Python 3.6, which this compute does not have (found: 3.11" in message
    assert "install it and put it on PATH" in message
    assert mlflow.search_runs([tracking], output_format="list") == []
    assert len(Client(sqlite_server.url).list_jobs(limit=1000)) == jobs_before


def test_a_package_that_does_not_exist_fails_the_job_with_the_resolver_text(
    tracking: str, tmp_path: Path, sqlite_server: Server
) -> None:
    project = _python_env_project(tmp_path / "p", ["flowyard-no-such-package-anywhere==1.0"])
    with pytest.raises(ExecutionException):
        mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    run = mlflow.search_runs([tracking], output_format="list")[0]
    assert run.info.status == "FAILED"
    job = Client(sqlite_server.url).get_job(run.info.run_id)
    assert job.status == JobStatus.FAILED
    assert job.events[-1].reason == "environment build failed"
    assert job.error is not None and job.error.type == "EnvBuildError"
    assert "flowyard-no-such-package-anywhere" in (job.error.message or "")
    assert "not found in the package registry" in (job.error.message or "")


def test_the_example_runs_in_its_pinned_env(tracking: str) -> None:
    submitted = mlflow.projects.run(
        str(EXAMPLE), parameters={"steps": 2}, backend="flowyard", backend_config=BUILD
    )
    log = _log(submitted.run_id)
    assert "environment: python_env.yaml (Python 3.11)" in log
    assert "environment: built" in log
    assert "scikit-learn==1.9.1" in log
    assert MlflowClient().get_run(submitted.run_id).info.status == "FINISHED"


def test_conda_translation_rules(tmp_path: Path) -> None:
    path = tmp_path / "conda.yaml"
    path.write_text(
        "dependencies:\n  - python=3.11\n  - conda-forge::numpy=1.26\n  - pytorch>=2.0\n"
        "  - pandas\n  - pip\n  - pip:\n      - requests==2.32.0\n"
    )
    spec = from_conda_yaml(path)
    assert spec["python"] == "3.11"
    assert spec["dependencies"] == ["numpy==1.26.*", "torch>=2.0", "pandas", "requests==2.32.0"]
    path.write_text("dependencies:\n  - cudatoolkit=11.8\n")
    with pytest.raises(InvalidRequestError, match="conda package 'cudatoolkit'"):
        from_conda_yaml(path)
    assert json.dumps(spec)  # a job stores it as JSON


def test_requirements_files_and_a_broken_cached_env(
    tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-r requirements.txt` (as MLflow's own python_env.yaml files write it) is read into the
    spec, so the cache key covers it; a cached env whose marker is gone is rebuilt, not kept."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    (tmp_path / "requirements.txt").write_text("# pinned\nsix==1.16.0  # tiny\n")
    env_file = tmp_path / "python_env.yaml"
    env_file.write_text('python: "3.11"\ndependencies:\n  - -r requirements.txt\n')
    spec = from_python_env(env_file)
    assert spec["dependencies"] == ["six==1.16.0"]
    env = builder.ensure(spec, mlflow.__version__, lambda _: None, tmp_path)
    assert env.built
    (env.path / builder.MARKER).unlink()
    again = builder.ensure(spec, mlflow.__version__, lambda _: None, tmp_path)
    assert again.built and again.path == env.path
    env_file.write_text('python: "3.11"\ndependencies:\n  - -r missing.txt\n')
    with pytest.raises(InvalidRequestError, match=r"missing\.txt named in the environment"):
        from_python_env(env_file)
