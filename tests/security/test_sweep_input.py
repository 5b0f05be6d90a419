"""A sweep's spec is hostile input: what could reach a shell (a parameter's name, a choice's
value) is refused or passed as a plain word, and a refused sweep leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import pytest

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.servers import Server, auth_headers, fast_workspace, run_cli

API = "/api/flowyard/v1"
PROJECT = Path(__file__).resolve().parents[1] / "projects" / "sweep"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("sweep-input"))
    created = run_cli(
        "compute", "create", "cpu", "--type", "process",
        cwd=server.cwd, env={"FLOWYARD_WORKSPACE_URL": server.url},
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    yield server
    server.stop()


def _job(snapshot_id: str = "0" * 64) -> dict[str, object]:
    return {
        "experiment_id": "0",
        "snapshot_id": snapshot_id,
        "project_uri": ".",
        "entry_point": "main",
        "user": "x",
        "compute": "cpu",
    }


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ([1, 2], "spec: Input should be a valid dictionary"),
        (
            {"search_space": {"x;touch /tmp/pwned": {"type": "uniform", "low": 0, "high": 1}}},
            "names the parameter 'x;touch /tmp/pwned'",
        ),
        (
            {
                "search_space": {"x": {"type": "uniform", "low": 0, "high": 1}},
                "objective": {"metric": "loss"},
                "limits": {"max_trials": 10**9},
            },
            "split it into several sweeps",
        ),
        (
            {
                "search_space": {"x": {"type": "uniform", "low": 0, "high": 1}},
                "objective": {"metric": "loss"},
                "limits": {"max_trials": 2},
            },
            "needs the entry point stored with its submission",
        ),
    ],
)
def test_a_hostile_or_wrong_sweep_is_refused_and_leaves_nothing(
    workspace: Server, spec: object, words: str
) -> None:
    with Client(workspace.url) as client:
        before = len(client.list_jobs(limit=1000))
        answer = httpx.post(
            f"{workspace.url}{API}/sweeps",
            json={"job": _job(), "spec": spec},
            headers=auth_headers(workspace),
            timeout=30,
        )
        assert answer.status_code in (400, 422), answer.text
        assert words in answer.json()["message"]
        assert len(client.list_jobs(limit=1000)) == before


def test_a_choice_value_reaches_the_trial_as_a_plain_word(
    workspace: Server, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    value = f"$(touch {marker}); `touch {marker}`"
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment("hostile-sweep")
    try:
        run = mlflow.projects.run(
            str(PROJECT),
            parameters={"steps": 1},
            backend="flowyard",
            backend_config={
                "COMPUTE": "cpu",
                "USE_CONDA": False,
                "STREAM_OUTPUT": False,
                "SWEEP": {
                    "search_space": {"kind": {"type": "choice", "values": [value]}},
                    "sampling": "grid",
                    "objective": {"metric": "loss"},
                },
            },
        )
    finally:
        mlflow.set_tracking_uri(None)
    with Client(workspace.url) as client:
        sweep = client.get_sweep(run.run_id)
    assert sweep.job.status == JobStatus.COMPLETED
    (trial,) = sweep.trials
    assert trial.parameters == {"kind": value}
    assert not marker.exists()
