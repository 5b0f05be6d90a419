"""What runs with ``backend="local"`` runs the same with ``backend="flowyard"``: MLflow code inside
a job (set_experiment, nested runs, search_runs, tags, a registered model, an inner
``mlflow.projects.run``) leaves the same runs, tags and model versions, on the submitting machine
and on a ``process`` compute. (On Ray: tests/compute/test_ray.py.)"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.factories import process_workspace
from tests.parity import PARITY, run_both
from tests.servers import Server, tracking


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tracking(process_workspace(tmp_path_factory.mktemp("parity"), "cpu-cluster")) as server:
        yield server


@pytest.mark.parametrize("compute", ["local", "cpu-cluster"])
def test_mlflow_code_in_a_job_does_what_it_does_locally(
    workspace: Server, compute: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # MLflow's local backend runs the entry point with the `python` on PATH: this one's.
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    local, flowyard = run_both(PARITY, {"COMPUTE": compute})
    assert set(local["runs"]) == {"<root>", "child-0", "child-1", "inner-train"}
    assert local["runs"]["<root>"]["metrics"]["children"] == 3.0
    assert local["model_versions"] == [("1", "inner-train", "READY")]
    assert list(local["beside"]) == ["-side"]
    assert flowyard == local
