"""Sweeps end to end, with real Optuna against a real workspace and a 4-slot process compute: a
project whose loss is a known function of its parameters (tests/projects/sweep) is searched by
grid, random and TPE, pruned by the median policy, canceled, and driven through a `kill -9` of
its server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import JobStatus, SweepOut
from tests.servers import Server, fast_workspace, run_cli

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "sweep"
COMPUTE = "sweeps"
# A lease short enough that a restarted server takes its sweeps back within seconds.
ENV = {"FLOWYARD_SWEEP_LEASE_S": "2"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("sweeps"), env=ENV)
    created = run_cli(
        "compute",
        "create",
        COMPUTE,
        "--type",
        "process",
        "--max-concurrent-jobs",
        "4",
        cwd=server.cwd,
        env={"FLOWYARD_WORKSPACE_URL": server.url},
    )
    assert created.returncode == 0, created.stderr
    yield server
    server.stop()


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"sweep-{tmp_path.name}")
    with Client(workspace.url) as client:
        yield client
    mlflow.set_tracking_uri(None)


def _sweep(spec: dict[str, Any], *, wait: bool = True, **parameters: Any) -> str:
    run = mlflow.projects.run(
        str(PROJECT),
        parameters=parameters,
        backend="flowyard",
        synchronous=wait,
        backend_config={
            "COMPUTE": COMPUTE,
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "SWEEP": spec,
        },
    )
    return str(run.run_id)


def _done(client: Client, sweep_id: str, timeout: float = 240) -> SweepOut:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get_sweep(sweep_id)
        if sweep.job.status.is_final and all(t.status.is_final for t in sweep.trials):
            return sweep
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} did not end: {client.get_sweep(sweep_id)}")


def test_a_grid_sweep_covers_the_grid_and_its_parent_holds_the_best(client: Client) -> None:
    spec = {
        "search_space": {
            "x": {"type": "choice", "values": [0, 1, 2, 3]},
            "kind": {"type": "choice", "values": ["good", "bad"]},
        },
        "sampling": {"algorithm": "grid", "seed": 3},
        "objective": {"metric": "loss", "goal": "minimize"},
        "limits": {"max_concurrent_trials": 4},
    }
    sweep_id = _sweep(spec, y=-1, steps=2)
    sweep = client.get_sweep(sweep_id)
    assert sweep.job.status == JobStatus.COMPLETED, sweep.job.events[-1].reason
    assert sweep.job.kind == "sweep"
    points = {(t.parameters["x"], t.parameters["kind"]) for t in sweep.trials}
    assert points == {(str(x), k) for x in range(4) for k in ("good", "bad")}
    assert [t.number for t in sorted(sweep.trials, key=lambda t: t.number)] == list(range(8))
    # Sorted by the objective: the best (x=2, good: loss 0) first.
    assert sweep.trials[0].parameters == {"x": "2", "kind": "good"}
    assert sweep.trials[0].value == pytest.approx(0.0)
    values = [t.value for t in sweep.trials]
    assert values == sorted(values)
    # MLflow nests the trials under the sweep's run, which holds the best trial.
    tracking = MlflowClient()
    parent = tracking.get_run(sweep_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["x"] == "2" and parent.data.params["kind"] == "good"
    assert parent.data.params["y"] == "-1"  # the parameters every trial shares
    assert parent.data.metrics["loss"] == pytest.approx(0.0)
    assert parent.data.tags["flowyard.sweep.best_trial"] == sweep.trials[0].run_id
    children = tracking.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{sweep_id}'"
    )
    assert {r.info.run_id for r in children} == {t.run_id for t in sweep.trials}
    assert all(r.info.status == "FINISHED" for r in children)
    # The sweep's log says what happened, ending with the best trial.
    log = client.read_log(sweep_id, 0)[0].decode()
    assert log.count("queued:") == 8 and "best: trial" in log


def _best(client: Client, algorithm: str, seed: int) -> float:
    spec = {
        "search_space": {
            "x": {"type": "uniform", "low": -10, "high": 10},
            "y": {"type": "uniform", "low": -10, "high": 10},
        },
        "sampling": {"algorithm": algorithm, "seed": seed},
        "objective": {"metric": "loss", "goal": "minimize"},
        "limits": {"max_trials": 30, "max_concurrent_trials": 4},
    }
    sweep = client.get_sweep(_sweep(spec, steps=1))
    assert sweep.job.status == JobStatus.COMPLETED
    assert len(sweep.trials) == 30
    assert sweep.best_value is not None
    return sweep.best_value


@pytest.mark.slow
def test_seeded_tpe_finds_a_better_objective_than_seeded_random(client: Client) -> None:
    tpe = _best(client, "bayesian", seed=11)
    random = _best(client, "random", seed=11)
    assert tpe < random, (tpe, random)
