"""Run one project with MLflow's local backend and with Flowyard's, and compare what each left in
the workspace: runs (by name, with their status, params, metrics and tags), the runs of a second
experiment, and model versions.

What legitimately differs between the two backends is left out of the comparison and named here:
MLflow's own bookkeeping tags (``mlflow.source.*``, ``mlflow.user``, the backend's name, the
project's env), Flowyard's own tags (``flowyard.*``), run ids, and times.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

PROJECT = Path(__file__).resolve().parent / "projects" / "parity"
# MLflow tags that describe the runs' structure rather than where they ran.
_KEPT_MLFLOW_TAGS = ("mlflow.runName", "mlflow.parentRunId")


def _tags(run: Run, names: dict[str, str]) -> dict[str, str]:
    kept = {}
    for key, value in run.data.tags.items():
        if key.startswith("flowyard.") or (
            key.startswith("mlflow.") and key not in _KEPT_MLFLOW_TAGS
        ):
            continue
        # A parent is named by its run name, which both backends share, not by its id.
        kept[key] = names.get(value, value) if key == "mlflow.parentRunId" else value
    return kept


def _describe_runs(runs: list[Run], root_id: str) -> dict[str, dict[str, Any]]:
    names = {r.info.run_id: r.data.tags.get("mlflow.runName", "") for r in runs}
    names[root_id] = "<root>"
    return {
        names[r.info.run_id]: {
            "status": r.info.status,
            "params": r.data.params,
            "metrics": r.data.metrics,
            "tags": _tags(r, names),
        }
        for r in runs
    }


def describe(root_run_id: str, model_name: str) -> dict[str, Any]:
    """What a run of the parity project left behind, free of ids and of where it ran."""
    client = MlflowClient()
    root = client.get_run(root_run_id)
    experiment = client.get_experiment(root.info.experiment_id)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    side = client.get_experiment_by_name(f"{experiment.name}-side")
    side_runs = client.search_runs([side.experiment_id]) if side else []
    by_name = {r.info.run_id: r.data.tags.get("mlflow.runName", "") for r in runs}
    versions = client.search_model_versions(f"name = '{model_name}'")
    return {
        "runs": _describe_runs(runs, root_run_id),
        "side": _describe_runs(side_runs, ""),
        "model_versions": sorted(
            (v.version, by_name.get(v.run_id, "<elsewhere>"), v.status) for v in versions
        ),
    }


def run_both(backend_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The parity project run synchronously with ``backend="local"`` and then with
    ``backend="flowyard"`` (``backend_config``), each in an experiment of its own; returns both
    descriptions."""
    results = []
    for backend in ("local", "flowyard"):
        tag = uuid.uuid4().hex[:8]
        experiment = mlflow.set_experiment(f"parity-{backend}-{tag}")
        model_name = f"parity-model-{tag}"
        kwargs: dict[str, Any] = (
            {"env_manager": "local"}
            if backend == "local"
            else {"backend_config": {"USE_CONDA": False, **backend_config}}
        )
        submitted = mlflow.projects.run(
            str(PROJECT),
            parameters={"label": "same", "model_name": model_name, "trials": 2},
            experiment_id=experiment.experiment_id,
            backend=backend,
            synchronous=True,
            **kwargs,
        )
        results.append(describe(submitted.run_id, model_name))
    return results[0], results[1]
