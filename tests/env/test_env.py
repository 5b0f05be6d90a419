"""Job environments built with uv from python_env.yaml or conda.yaml: fresh, cached, shared,
never half-built, with clear errors."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import ExecutionException

from flowyard import Workspace
from flowyard.client import Client
from flowyard.env import builder, failure
from flowyard.env.spec import from_conda_yaml, from_python_env
from flowyard.errors import InterpreterNotFoundError, InvalidRequestError
from flowyard.jobspec import EnvironmentSpec, EnvManager
from flowyard.schemas import JobStatus
from tests.factories import EXAMPLE, make_project
from tests.servers import Server

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


def test_a_runner_prunes_its_hosts_environments_past_their_bound(
    tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a bound of 0 MB, the environment a job ran in is removed once the job has ended (it
    was in use until then), and the job completed in it. (Jobs here write their own bytecode:
    a background compile would hold the environment past the runner's one prune, see below.)"""
    monkeypatch.setenv("FLOWYARD_ENV_CACHE_MB", "0")
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    project = _python_env_project(tmp_path / "p", ["six==1.16.0"])
    run = mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    log = _log(run.run_id)
    assert "SIX 1.16.0" in log and "environment: built" in log
    env_folder = _executable(log).parent.parent
    deadline = time.monotonic() + 30  # the runner prunes after its report
    while env_folder.exists():
        assert time.monotonic() < deadline, f"{env_folder} was never pruned"
        time.sleep(0.1)


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
from flowyard.env import builder, failure
from flowyard.jobspec import EnvironmentSpec, EnvManager
spec = EnvironmentSpec(EnvManager.UV, source="python_env.yaml", dependencies=("six==1.16.0",))
builder.ensure(spec, sys.argv[1], lambda b: (sys.stdout.buffer.write(b), sys.stdout.flush()))
"""


def test_a_build_killed_midway_is_never_reused(
    tmp_path: Path, uv_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    # Jobs here would not write bytecode: the build compiles it in the background.
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
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

    spec = EnvironmentSpec(EnvManager.UV, source="python_env.yaml", dependencies=("six==1.16.0",))
    env = builder.ensure(spec, mlflow.__version__, lambda _: None)
    assert env.built
    check = subprocess.run(
        [str(env.python), "-c", "import six, mlflow; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.strip() == "1.16.0"
    assert {name for name, _ in builder.prune(unused_days=30)} == {p.name for p in leftovers}
    assert [e.key for e in builder.list_envs()] == [env.path.name]
    # Held while a job runs in it: even "remove all" leaves it, until it is let go.
    assert builder.prune(unused_days=None) == []
    env.release()
    # The background compile holds it as a job does; once it has let go, it can go.
    with (envs / f"{env.path.name}.use").open("a+b") as use:
        fcntl.flock(use.fileno(), fcntl.LOCK_EX)
        fcntl.flock(use.fileno(), fcntl.LOCK_UN)
    assert [name for name, _ in builder.prune(None, dry_run=True)] == [env.path.name]
    assert env.path.exists()
    assert [name for name, _ in builder.prune(None)] == [env.path.name]
    assert not env.path.exists()


def test_pruning_past_a_size_removes_the_least_recently_used_not_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = builder.env_root()
    now = time.time()
    for age, name in ((300, "oldest"), (200, "older"), (100, "newest")):
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "payload").write_bytes(b"x" * 1_000_000)
        (folder / builder.MARKER).write_text("{}")
        os.utime(folder / builder.MARKER, (now - age, now - age))
    held = builder.hold(root, "oldest")  # a job runs in it
    try:
        removed = builder.prune(unused_days=30, max_bytes=1_500_000)
        assert [name for name, _ in removed] == ["older", "newest"]
        assert all(size >= 1_000_000 for _, size in removed)
        assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["oldest"]
    finally:
        held.close()
    assert builder.prune(unused_days=30, max_bytes=1_500_000) == []


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
    assert job.error.message == (
        "The environment from python_env.yaml cannot be built: it asks for "
        "flowyard-no-such-package-anywhere, which is not in the package index; check its name, "
        "or name the index that has it with `--extra-index-url URL` in the requirements."
    )
    assert "was not found in the package registry" in _log(run.info.run_id)  # uv's own words


def test_the_azure_samples_pin_fails_with_a_sentence_naming_it_and_the_fix(
    tracking: str, tmp_path: Path, sqlite_server: Server
) -> None:
    """The Azure sample's conda.yaml pins scikit-learn=0.19.1, which has no wheel for the
    compute's Python 3.11 and no longer builds from source; it also lists azureml-mlflow."""
    project = make_project(tmp_path / "p", "print(1)\n", parameters="{}", command="python main.py")
    (project / "conda.yaml").write_text(
        "name: azure-sample\ndependencies:\n  - scikit-learn=0.19.1\n  - pip\n"
        "  - pip:\n      - azureml-mlflow\n"
    )
    with pytest.raises(ExecutionException):
        mlflow.projects.run(str(project), backend="flowyard", backend_config=BUILD)
    run = mlflow.search_runs([tracking], output_format="list")[0]
    job = Client(sqlite_server.url).get_job(run.info.run_id)
    assert job.error is not None and job.error.type == "EnvBuildError"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert job.error.message == (
        "The environment from conda.yaml cannot be built: it asks for scikit-learn==0.19.1, "
        f"which has no wheel for Python {python} in the package index, and building it from "
        "source failed; loosen the pin (e.g. `scikit-learn>=0.19.1`) so a release with a wheel "
        "can be picked, or ask for a Python it has wheels for on a compute that has it."
    )
    log = _log(run.info.run_id)
    assert f"environment: conda.yaml (the compute's Python {python})" in log
    assert "leaving out azureml-mlflow: Azure's tracking plugin, not needed on Flowyard" in log
    assert "Failed to build `scikit-learn==0.19.1`" in log  # uv's whole output stays in the log


def test_a_python_the_compute_lacks_fails_a_runner_build_with_the_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a remote compute's runner meets: the check at submit runs only for local jobs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = EnvironmentSpec(EnvManager.UV, source="conda.yaml", python="3.6")
    with pytest.raises(InterpreterNotFoundError) as err:
        builder.ensure(spec, mlflow.__version__, lambda _: None)
    assert "conda.yaml asks for Python 3.6, which this compute does not have (found: 3." in str(
        err.value
    )
    assert "pyenv" not in str(err.value).split("found:")[0]


def test_requirements_leave_out_azure_ml_and_add_mlflow() -> None:
    spec = EnvironmentSpec(
        EnvManager.UV,
        dependencies=("scikit-learn==1.9.1", "azureml-mlflow", "AzureML_Core>=1.0", "azure-ai-ml"),
    )
    reqs, notes = builder.requirements(spec, "3.17.0")
    assert reqs == ["scikit-learn==1.9.1", "azure-ai-ml", "mlflow-skinny==3.17.0"]
    assert notes == [
        "leaving out azureml-mlflow: Azure's tracking plugin, not needed on Flowyard",
        "leaving out azureml-core: Azure ML's SDK, not needed on Flowyard (drop `import "
        "azureml` from the code)",
        "adding mlflow-skinny==3.17.0 so the job's `import mlflow` tracks to the workspace",
    ]
    spec = replace(
        spec, dependencies=("mlflow", "azureml-mlflow", "--extra-index-url https://x/simple")
    )
    assert builder.requirements(spec, "3.17.0")[0] == [
        "mlflow",
        "--extra-index-url https://x/simple",
    ]
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert builder.describe(EnvironmentSpec(EnvManager.UV, source="conda.yaml")) == (
        f"conda.yaml (the compute's Python {python})"
    )
    assert builder.describe(
        EnvironmentSpec(EnvManager.UV, source="python_env.yaml", python="3.10")
    ) == ("python_env.yaml (Python 3.10)")


UV_SAYS = {
    "no_abi": """\
Using Python 3.12.1 environment at: /envs/x
error: No solution found when resolving dependencies
  cause: Because torch==1.4.0 has no wheels with a matching Python ABI tag (e.g., `cp312`) and you
         require torch==1.4.0, we can conclude that your requirements are unsatisfiable.

hint: You require CPython 3.12 (`cp312`), but we only found wheels for `torch` (v1.4.0) ...
""",
    "build": """\
Using Python 3.11.7 environment at: /envs/x
Resolved 1 package in 302ms
   Building scikit-learn==0.19.1
error: Failed to build `scikit-learn==0.19.1`
  cause: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed
         ModuleNotFoundError: No module named 'pkg_resources'
""",
    "no_version": """\
error: No solution found when resolving dependencies
  cause: Because there is no version of scikit-learn==0.0.1 and you require scikit-learn==0.0.1,
         we can conclude that your requirements are unsatisfiable.
""",
    "only": """\
error: No solution found when resolving dependencies
  cause: Because only scikit-learn<=1.9.1 is available and you require scikit-learn>=99, we can
         conclude that your requirements are unsatisfiable.
""",
    "needs_python": """\
error: No solution found when resolving dependencies
  cause: Because the current Python version (3.11.7) does not satisfy Python>=3.12 and
         django==6.0 depends on Python>=3.12, we can conclude that django==6.0 cannot be used.
         And because you require django==6.0, we can conclude that your requirements are
         unsatisfiable.
""",
    "through": """\
error: No solution found when resolving dependencies
  cause: Because tensorflow==2.4.0 depends on numpy>=1.19.2,<1.20 and numpy>=1.19.2,<1.20 has no
         wheels with a matching Python ABI tag (e.g., `cp311`), we can conclude that
         tensorflow==2.4.0 cannot be used.
         And because you require tensorflow==2.4.0, we can conclude that your requirements are
         unsatisfiable.
""",
    "other": """\
error: Failed to install: torch-2.0-cp311-linux_x86_64.whl (torch==2.0)
  cause: No space left on device (os error 28)
hint: free some space
""",
}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (
            "no_abi",
            "it asks for torch==1.4.0, which has no build for Python 3.12 in the package index; "
            "loosen the pin (e.g. `torch>=1.4.0`), or ask for a Python it was built for on a "
            "compute that has it.",
        ),
        (
            "build",
            "it asks for scikit-learn==0.19.1, which has no wheel for Python 3.11 in the package "
            "index, and building it from source failed; loosen the pin (e.g. "
            "`scikit-learn>=0.19.1`) so a release",
        ),
        (
            "no_version",
            "it asks for scikit-learn==0.0.1, of which the package index has no such version; "
            "loosen the pin (e.g. `scikit-learn>=0.0.1`).",
        ),
        (
            "only",
            "it asks for scikit-learn>=99, of which the package index has no such version (only "
            "scikit-learn<=1.9.1 is available); change the requirement.",
        ),
        (
            "needs_python",
            "it asks for django==6.0, which needs Python>=3.12; loosen the pin (e.g. "
            "`django>=6.0`), or ask for a Python it supports on a compute that has it.",
        ),
        (
            "through",
            "it asks for numpy>=1.19.2,<1.20 (which tensorflow==2.4.0 needs), which has no build "
            "for Python 3.10 in the package index; loosen the pin (e.g. `tensorflow>=2.4.0`)",
        ),
        (
            "other",
            "uv could not install the packages of env.yaml (error: Failed to install: "
            "torch-2.0-cp311-linux_x86_64.whl (torch==2.0) cause: No space left on device (os "
            "error 28)); the job log holds uv's whole output.",
        ),
    ],
)
def test_uv_failures_in_one_sentence(case: str, expected: str) -> None:
    message = failure.explain(UV_SAYS[case], "env.yaml", "3.10")
    assert expected in message
    if case != "other":
        assert message.startswith("The environment from env.yaml cannot be built: ")
    assert message.replace("e.g. ", "").count(". ") == 0 and message.endswith(".")


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
    assert spec.python == "3.11"
    assert spec.dependencies == ("numpy==1.26.*", "torch>=2.0", "pandas", "requests==2.32.0")
    path.write_text("dependencies:\n  - cudatoolkit=11.8\n")
    with pytest.raises(InvalidRequestError, match="conda package 'cudatoolkit'"):
        from_conda_yaml(path)
    assert EnvironmentSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec


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
    assert spec.dependencies == ("six==1.16.0",)
    env = builder.ensure(spec, mlflow.__version__, lambda _: None, tmp_path)
    assert env.built
    (env.path / builder.MARKER).unlink()
    again = builder.ensure(spec, mlflow.__version__, lambda _: None, tmp_path)
    assert again.built and again.path == env.path
    env_file.write_text('python: "3.11"\ndependencies:\n  - -r missing.txt\n')
    with pytest.raises(InvalidRequestError, match=r"missing\.txt named in the environment"):
        from_python_env(env_file)
