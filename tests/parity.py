"""Run one project with MLflow's local backend and with Flowyard's, and compare what each left in
the workspace: the runs of its experiment and of any experiment it made beside it (by run name,
with status, params, metrics, tags and artifacts), the models it logged, and model versions.

What legitimately differs between the two backends is left out of the comparison and named here:
MLflow's own bookkeeping tags (``mlflow.source.*``, ``mlflow.user``, the backend's name, the
project's env), Flowyard's own tags (``flowyard.*``) and what Flowyard adds to every run (its log
as ``logs/std_log.txt``, ``./outputs`` as ``outputs/``, and MLflow's system metrics ``system/*``,
which the runner records for a job unless turned off), run ids, and times.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Run

PROJECTS = Path(__file__).resolve().parent / "projects"
# MLflow tags that describe the runs' structure rather than where they ran.
_KEPT_MLFLOW_TAGS = ("mlflow.runName", "mlflow.parentRunId")
# What Flowyard adds to every run, on top of what the project logs.
_FLOWYARD_ARTIFACTS = ("logs", "outputs")


@dataclass(frozen=True)
class Case:
    """A project and how to run it. ``{tag}`` in a parameter value or a model name becomes a
    value of its own for each backend, so the two runs never share a registered model."""

    name: str
    uri: str
    parameters: dict[str, Any] = field(default_factory=dict)
    entry_point: str = "main"
    version: str | None = None
    models: tuple[str, ...] = ()
    # Run from the project's folder: MLflow resolves relative `path` parameters from there.
    in_project: bool = False


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


def _artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    found = []
    for info in client.list_artifacts(run_id, path):
        if path is None and info.path in _FLOWYARD_ARTIFACTS:
            continue
        found += _artifacts(client, run_id, info.path) if info.is_dir else [info.path]
    return sorted(found)


def _describe_runs(client: MlflowClient, runs: list[Run], root_id: str, tag: str) -> dict[str, Any]:
    names = {r.info.run_id: r.data.tags.get("mlflow.runName", "") for r in runs}
    names[root_id] = "<root>"
    described = {
        names[r.info.run_id]: {
            "status": r.info.status,
            "params": {k: v.replace(tag, "{tag}") for k, v in r.data.params.items()},
            "metrics": {k: v for k, v in r.data.metrics.items() if not k.startswith("system/")},
            "tags": _tags(r, names),
            "artifacts": _artifacts(client, r.info.run_id),
        }
        for r in runs
    }
    if root := described.get("<root>"):
        root["tags"].pop("mlflow.runName", None)  # MLflow names a project's run at random
    return described


def describe(root_run_id: str, tag: str, models: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a run of a project left behind, free of ids and of where it ran (``tag``, the
    backend's own value in parameters, shown as ``{tag}``)."""
    client = MlflowClient()
    root = client.get_run(root_run_id)
    experiment = client.get_experiment(root.info.experiment_id)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    names = {r.info.run_id: r.data.tags.get("mlflow.runName", "") for r in runs}
    names[root_run_id] = "<root>"
    beside = {
        e.name.removeprefix(experiment.name): _describe_runs(
            client, client.search_runs([e.experiment_id]), "", tag
        )
        for e in client.search_experiments(filter_string=f"name LIKE '{experiment.name}-%'")
    }
    logged = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    versions = [v for name in models for v in client.search_model_versions(f"name = '{name}'")]
    return {
        "runs": _describe_runs(client, runs, root_run_id, tag),
        "beside": beside,
        "logged_models": sorted((m.name, names.get(m.source_run_id or "", "?")) for m in logged),
        "model_versions": sorted((v.version, names.get(v.run_id, "?"), v.status) for v in versions),
    }


@contextmanager
def _cwd(path: Path | None) -> Iterator[None]:
    before = Path.cwd()
    if path is not None:
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_case(case: Case, backend: str, backend_config: dict[str, Any]) -> dict[str, Any]:
    """``case`` run synchronously with ``backend``, in an experiment of its own; what it left."""
    tag = uuid.uuid4().hex[:8]
    experiment = mlflow.set_experiment(f"{case.name}-{backend}-{tag}")
    kwargs: dict[str, Any] = (
        {"env_manager": "local"}
        if backend == "local"
        else {"backend_config": {"USE_CONDA": False, **backend_config}}
    )
    parameters = {
        k: v.format(tag=tag) if isinstance(v, str) else v for k, v in case.parameters.items()
    }
    with _cwd(Path(case.uri) if case.in_project else None):
        submitted = mlflow.projects.run(
            case.uri,
            entry_point=case.entry_point,
            version=case.version,
            parameters=parameters,
            experiment_id=experiment.experiment_id,
            backend=backend,
            synchronous=True,
            **kwargs,
        )
    return describe(submitted.run_id, tag, tuple(m.format(tag=tag) for m in case.models))


def run_both(case: Case, backend_config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``case`` with ``backend="local"``, then with ``backend="flowyard"``; both descriptions."""
    return run_case(case, "local", {}), run_case(case, "flowyard", backend_config)


PARITY = Case(
    "parity",
    str(PROJECTS / "parity"),
    {"label": "same", "model_name": "parity-model-{tag}", "trials": 2},
    models=("parity-model-{tag}",),
)
