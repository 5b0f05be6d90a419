"""The road from MLflow and from Azure: projects like MLflow's examples and the Azure sample, each
run with ``backend="local"`` and ``backend="flowyard"`` (on this machine and on a ``process``
compute), leave the same runs, params, metrics, tags, artifacts, logged models and model versions.
What differs on purpose is listed in tests/parity.py and docs/migrating-from-azureml.md."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.exceptions import ExecutionException

from tests.factories import make_project, process_workspace
from tests.parity import PROJECTS, Case, run_both, run_case
from tests.servers import Server, free_port, tracking

CASES = [
    Case(
        "elasticnet",
        str(PROJECTS / "elasticnet"),
        {"alpha": 0.3, "l1_ratio": 0.2, "model_name": "wine-{tag}"},
        models=("wine-{tag}",),
    ),
    Case("logreg", str(PROJECTS / "logreg")),
    Case(
        "multistep",
        str(PROJECTS / "multistep"),
        {"ratio": 0.5, "steps": 4, "source": "s3://bucket/other.csv"},
        in_project=True,
    ),
    Case(
        "multistep-summarize",
        str(PROJECTS / "multistep"),
        {"data": str(PROJECTS / "multistep" / "data" / "points.txt")},
        entry_point="summarize",
    ),
    # The Azure sample's project: an old conda.yaml (scikit-learn 0.19.1, azureml-mlflow) that
    # USE_CONDA false leaves alone, as Azure's local runs did.
    Case("azure-sample", str(PROJECTS / "azure_sample"), {"alpha": 0.3}),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("corpus")
    with tracking(process_workspace(folder, "cpu-cluster", "--max-concurrent-jobs", "2")) as server:
        yield server


@pytest.fixture(autouse=True)
def python_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's local backend runs the entry point with the `python` on PATH: this one's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


COMPUTES = ["local", "cpu-cluster"]


@pytest.mark.parametrize("compute", COMPUTES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_the_same_as_the_local_backend(workspace: Server, case: Case, compute: str) -> None:
    local, flowyard = run_both(case, {"COMPUTE": compute})
    assert local["runs"]["<root>"]["status"] == "FINISHED"
    assert flowyard == local


@pytest.fixture(scope="module")
def git_project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A project in a git repository served by `git daemon` on loopback; yields its URI and the
    commit of its first version (a later commit changes what it logs)."""
    base = tmp_path_factory.mktemp("git")
    repo = base / "project.git"
    shutil.copytree(PROJECTS / "logreg", repo)
    (repo / "version.py").write_text("import mlflow\nmlflow.log_metric('version', 1)\n")
    (repo / "MLproject").write_text(
        "name: versioned\nentry_points:\n  main:\n    command: python train.py\n"
        "  version:\n    command: python version.py\n"
    )
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    first = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    (repo / "version.py").write_text("import mlflow\nmlflow.log_metric('version', 2)\n")
    subprocess.run([*git, "commit", "-qam", "second"], check=True)
    port = free_port()
    daemon = subprocess.Popen(
        [
            *("git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1"),
            f"--port={port}",
            f"--base-path={base}",
            str(base),
        ],
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "git daemon did not start"
            time.sleep(0.1)
    yield f"git://127.0.0.1:{port}/project.git", first
    daemon.terminate()
    daemon.wait(10)


@pytest.mark.parametrize("compute", COMPUTES)
def test_a_git_uri_at_a_version(
    workspace: Server, git_project: tuple[str, str], compute: str
) -> None:
    uri, first = git_project
    case = Case("git", uri, entry_point="version", version=first)
    local, flowyard = run_both(case, {"COMPUTE": compute})
    assert local["runs"]["<root>"]["metrics"] == {"version": 1.0}  # the first commit's code
    assert flowyard == local


@pytest.mark.parametrize("compute", COMPUTES)
def test_a_gitignored_data_file(
    workspace: Server, compute: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """MLflow's local backend reads the project folder as it is; Flowyard sends a snapshot that
    honours .gitignore. The difference is said at submit, with the fix, and the fix works."""
    project = make_project(
        tmp_path / "p",
        """\
        import mlflow
        rows = open("data.csv").read().split()
        mlflow.log_metric("rows", len(rows))
        """,
        parameters="{}",
        command="python main.py",
        files={".gitignore": "*.csv\n", "data.csv": "a\nb\nc\n"},
    )
    case = Case("gitignored", str(project))
    local = run_case(case, "local", {})
    assert local["runs"]["<root>"]["metrics"] == {"rows": 3.0}
    with pytest.raises(ExecutionException):
        run_case(case, "flowyard", {"COMPUTE": compute})
    printed = capfd.readouterr()
    assert ".gitignore line 1: *.csv" in printed.err
    assert "FileNotFoundError" in printed.out  # the job's error, printed by wait()
    (project / ".flowyardignore").write_text("*.csv\n!data.csv\n")
    assert run_case(case, "flowyard", {"COMPUTE": compute}) == local
