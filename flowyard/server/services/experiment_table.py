"""An experiment's runs as a table: filtered and sorted by MLflow's own search.

The filter is MLflow's search syntax (``metrics.rmse < 0.7 and params.alpha = '0.3'``), handed to
the tracking store MLflow's server app uses, with the sort as its ``order_by``, so the studio
accepts exactly what ``mlflow.search_runs`` and MLflow's UI accept, and says what MLflow says when
it does not. A text search on run names is one more clause (``attributes.run_name ILIKE``).
A page's run ids come from ``mlflow_internals.page_run_ids`` (MLflow's filter translation and
order, in terms an index serves), the runs themselves from the store's ``search_runs``. Each
metric's lowest and highest value over the filtered runs is one aggregate over all of them
(``mlflow_internals.metric_ranges``), so the page asks for it separately (:func:`ranges`) and
shows its rows first: at 20,000 runs in an experiment the aggregate takes longer than the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from mlflow.entities import ViewType
from mlflow.exceptions import MlflowException
from sqlalchemy.orm import Session

from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.server import mlflow_internals
from flowyard.server.db.models import Job

PAGE_SIZE = 50
# Columns that are the run's own attributes, by the key MLflow's search sorts them with.
ATTRIBUTES = {
    "attributes.run_name": "Run",
    "attributes.status": "Status",
    "attributes.start_time": "Started",
    "attributes.end_time": "Ended",
}
DEFAULT_SORT = "attributes.start_time"
# Metrics named so are better low; any other is better high (the page says which it assumed).
LOWER_IS_BETTER = re.compile(r"loss|err|rmse|mse|mae|mape|perplexity|latency|time|duration", re.I)
EXAMPLE = "metrics.rmse < 0.7 and params.alpha = '0.3'"


@dataclass(frozen=True)
class TableQuery:
    filter: str = ""
    name: str = ""
    sort: str = DEFAULT_SORT
    desc: bool = True
    page: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        """This query as URL parameters, with ``changes``; empty ones left out."""
        values: dict[str, Any] = {
            "filter": self.filter,
            "name": self.name,
            "sort": self.sort,
            "order": "desc" if self.desc else "asc",
            "page": self.page,
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def sort_link(self, key: str) -> dict[str, str]:
        """The query that sorts by ``key``: ascending first, then the other way on each click."""
        order = "desc" if key == self.sort and not self.desc else "asc"
        return self.query(sort=key, order=order, page=1)


@dataclass
class Stat:
    low: float | None
    high: float | None
    lower_is_better: bool

    @property
    def best(self) -> float | None:
        return self.low if self.lower_is_better else self.high


@dataclass
class TableRow:
    run_id: str
    name: str
    status: str
    user: str
    start: datetime | None
    end: datetime | None
    is_job: bool
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def duration(self) -> str:
        if self.start is None:
            return ""
        end = self.end or datetime.now(UTC)
        return human_duration((end - self.start).total_seconds())


@dataclass
class ExperimentTable:
    experiment_id: str
    name: str
    rows: list[TableRow]
    param_keys: list[str]
    metric_keys: list[str]
    has_next: bool
    first: int
    error: str = ""


def human_duration(seconds: float) -> str:
    """A duration as people write it: 850 ms, 42 s, 4 min 07 s, 2 h 05 min, 3 d 4 h."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))} ms"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {s:02d} s"
    return f"{s} s"


def order_by(key: str, desc: bool) -> str:
    """``key`` as a term of MLflow's ``order_by``; parameter and metric names quoted."""
    kind, _, name = key.partition(".")
    return f"{kind}.`{name}` {'DESC' if desc else 'ASC'}"


def _name_clause(text: str) -> str:
    quote = "'" if "'" not in text else '"'
    if quote in text:
        raise InvalidRequestError(
            "A run name search cannot hold both ' and \"; leave one kind of quote out."
        )
    return f"attributes.run_name ILIKE {quote}%{text}%{quote}"


def _mlflow_error(e: MlflowException, what: str) -> InvalidRequestError:
    said = " ".join(str(e.message).split())
    return InvalidRequestError(
        f"The {what} is not MLflow search syntax ({said}); write it like {EXAMPLE}."
    )


def _sortable(key: str, params: list[str], metrics: list[str]) -> bool:
    kind, _, name = key.partition(".")
    if "`" in name:  # a name MLflow's order_by cannot quote
        return False
    return (
        key in ATTRIBUTES
        or (kind == "params" and name in params)
        or (kind == "metrics" and name in metrics)
    )


def table(session: Session, experiment_id: str, q: TableQuery) -> ExperimentTable:
    """The page ``q`` asks for of the experiment's live runs.

    Raises:
        NotFoundError: no such experiment.
    A filter MLflow refuses comes back as the table's ``error``, with no rows.
    """
    store = mlflow_internals.tracking_store()
    experiment = _experiment(store, experiment_id)
    params, metrics = mlflow_internals.experiment_keys(session, experiment_id)
    offset = (max(q.page, 1) - 1) * PAGE_SIZE
    result = ExperimentTable(
        experiment_id=str(experiment.experiment_id),
        name=str(experiment.name),
        rows=[],
        param_keys=params,
        metric_keys=metrics,
        has_next=False,
        first=offset + 1,
    )
    try:
        where = _where(q)
        sort = q.sort if _sortable(q.sort, params, metrics) else DEFAULT_SORT
        try:
            ids = mlflow_internals.page_run_ids(
                store, experiment_id, where, order_by(sort, q.desc), offset, PAGE_SIZE + 1
            )
        except MlflowException as e:
            raise _mlflow_error(e, "filter") from e
    except InvalidRequestError as e:
        result.error = e.message
        return result
    result.has_next = len(ids) > PAGE_SIZE
    ids = ids[:PAGE_SIZE]
    found = mlflow_internals.runs_by_ids(store, ids)
    # Keys only older runs have (past the newest thousand) still show for the page's runs.
    for run in found:
        params += [k for k in run.data.params if k not in params]
        metrics += [k for k in run.data.metrics if k not in metrics]
    params.sort()
    metrics.sort()
    jobs = set(session.scalars(sa.select(Job.id).where(Job.id.in_(ids)))) if ids else set()
    for run in found:
        info = run.info
        result.rows.append(
            TableRow(
                run_id=info.run_id,
                name=info.run_name or "",
                status=info.status,
                user=run.data.tags.get("mlflow.user", info.user_id or ""),
                start=_ms(info.start_time),
                end=_ms(info.end_time),
                is_job=info.run_id in jobs,
                params=dict(run.data.params),
                metrics=dict(run.data.metrics),
            )
        )
    return result


def _experiment(store: Any, experiment_id: str) -> Any:
    try:
        return store.get_experiment(experiment_id)
    except MlflowException as e:
        raise NotFoundError(
            f"Experiment {experiment_id} does not exist in this workspace; pick one from the "
            "experiments page."
        ) from e


def _where(q: TableQuery) -> str:
    """The filter and the name search as one MLflow search filter."""
    return " and ".join(c for c in (q.filter.strip(), _name_clause(q.name) if q.name else "") if c)


def ranges(experiment_id: str, q: TableQuery) -> dict[str, Stat]:
    """The lowest and highest value of each metric over the runs ``q`` selects (all its pages).

    Raises:
        NotFoundError: no such experiment.
        InvalidRequestError: MLflow refuses the filter.
    """
    store = mlflow_internals.tracking_store()
    _experiment(store, experiment_id)
    try:
        found = mlflow_internals.metric_ranges(store, experiment_id, _where(q))
    except MlflowException as e:
        raise _mlflow_error(e, "filter") from e
    return {
        key: Stat(low, high, lower_is_better=bool(LOWER_IS_BETTER.search(key)))
        for key, (low, high) in found.items()
    }


def _ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


@dataclass
class ExperimentEntry:
    experiment_id: str
    name: str
    runs: int
    last_update: datetime | None


def experiments(session: Session) -> list[ExperimentEntry]:
    """The workspace's live experiments, most recently changed first."""
    store = mlflow_internals.tracking_store()
    counts = mlflow_internals.experiment_run_counts(session)
    found = store.search_experiments(
        view_type=ViewType.ACTIVE_ONLY, max_results=1000, order_by=["last_update_time DESC"]
    )
    return [
        ExperimentEntry(
            experiment_id=str(e.experiment_id),
            name=str(e.name),
            runs=counts.get(str(e.experiment_id), 0),
            last_update=_ms(e.last_update_time),
        )
        for e in found
    ]
