"""The runs the compare page compares: picked ids, a sweep's trials, or an MLflow search over an
experiment (``metrics.rmse < 0.7 and params.alpha = '0.3'``), at most :data:`LIMIT` of them.

Any MLflow run can be compared, a Flowyard job's or not: rows come from MLflow's tables (name,
parameters, latest metrics) in a few ``IN`` queries; the job, when there is one, adds its status
and compute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.server import mlflow_internals
from flowyard.server.db.models import Job
from flowyard.server.services import sweeps as sweep_service
from flowyard.server.settings import ServerSettings

# Enough for a sweep; one metric-history answer holds them all (its MAX_RUNS).
LIMIT = 100


@dataclass(frozen=True)
class Ask:
    ids: list[str] = field(default_factory=list)
    sweep: str | None = None
    experiment: str | None = None
    filter: str = ""


@dataclass
class RunRow:
    run_id: str
    name: str
    experiment: str
    experiment_id: str
    status: str
    compute: str | None
    is_job: bool
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass
class RunSet:
    rows: list[RunRow]
    param_keys: list[str]
    differing: set[str]
    metric_keys: list[str]
    # What was asked for, in words, and how many more runs matched than are shown (None: all).
    source: str
    cut: bool
    # The metric and goal to mark the best by: a sweep's objective, else chosen on the page.
    objective: str | None = None
    minimize: bool = True

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"id": r.run_id, "label": r.name, "params": r.params, "metrics": r.metrics}
            for r in self.rows
        ]


def resolve(session: Session, settings: ServerSettings, ask: Ask) -> RunSet:
    """The runs asked for, newest first for a search; raises InvalidRequestError for a filter
    MLflow cannot parse and NotFoundError for an unknown sweep, experiment or run."""
    objective, minimize = None, True
    if ask.sweep:
        sweep, _job = sweep_service.get(session, ask.sweep)
        trials = sweep_service.trials(session, settings, sweep)
        ids = [t.run_id for t in trials]
        objective, minimize = sweep.spec.objective.metric, sweep.spec.objective.minimize
        source = f"the {len(ids)} trials of sweep {ask.sweep}"
    elif ask.experiment:
        name = mlflow_internals.experiment_name(session, ask.experiment)
        if name is None:
            raise NotFoundError(
                f"Experiment {ask.experiment} does not exist; pick one from the list."
            )
        ids = _search(ask.experiment, ask.filter)
        where = f" where {ask.filter}" if ask.filter.strip() else ""
        source = f"runs of experiment {name}{where}, newest first"
    else:
        ids = list(dict.fromkeys(ask.ids))
        source = f"{len(ids)} picked runs"
    cut = len(ids) > LIMIT
    ids = ids[:LIMIT]
    rows = _rows(session, ids)
    param_keys = sorted({k for r in rows for k in r.params})
    differing = {k for k in param_keys if len({r.params.get(k) for r in rows}) > 1}
    metric_keys = sorted({k for r in rows for k in r.metrics if not k.startswith("system/")})
    return RunSet(rows, param_keys, differing, metric_keys, source, cut, objective, minimize)


def _search(experiment_id: str, filter_string: str) -> list[str]:
    """Up to LIMIT + 1 run ids (one more tells the set was cut), by MLflow's own search."""
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    store = mlflow_internals.tracking_store()
    try:
        runs = store.search_runs(
            [experiment_id],
            filter_string.strip(),
            ViewType.ACTIVE_ONLY,
            max_results=LIMIT + 1,
            order_by=["attributes.start_time DESC"],
        )
    except MlflowException as e:
        raise InvalidRequestError(
            f"The filter {filter_string!r} is not MLflow search syntax ({e.message}); write "
            "it as e.g. metrics.rmse < 0.7 and params.alpha = '0.3'."
        ) from e
    return [r.info.run_id for r in runs]


def _rows(session: Session, ids: list[str]) -> list[RunRow]:
    names = mlflow_internals.run_names(session, ids)
    missing = [i for i in ids if i not in names]
    if missing:
        raise NotFoundError(f"No run {missing[0]} in this workspace; check the run id.")
    experiments = mlflow_internals.experiment_names(session)
    params = mlflow_internals.run_params(session, ids)
    latest = mlflow_internals.latest_metrics(session, ids)
    jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.id.in_(ids)))}
    run_experiments = mlflow_internals.run_experiments(session, ids)
    rows = []
    for run_id in ids:
        job = jobs.get(run_id)
        experiment, status = run_experiments.get(run_id, ("", ""))
        rows.append(
            RunRow(
                run_id=run_id,
                name=names.get(run_id) or run_id[:8],
                experiment=experiments.get(experiment, experiment),
                experiment_id=experiment,
                status=job.status if job else status.lower(),
                compute=job.compute if job else None,
                is_job=job is not None,
                params=dict(sorted(params.get(run_id, {}).items())),
                metrics={k: v for k, (v, _) in latest.get(run_id, {}).items()},
            )
        )
    return rows
