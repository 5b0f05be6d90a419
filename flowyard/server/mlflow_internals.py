"""The one place the server reaches into MLflow past its documented API: the variables its server
app reads its stores from, its tracking store, its schema set-up, and its tables.

Flowyard serves MLflow's own server app over the same database as its own tables, so it must set
that app up as `mlflow server` does, and the studio reads MLflow's tables in a few indexed queries
instead of one store call per run. None of that is public MLflow API: every use is a small function
here, with a contract test in tests/test_mlflow_internals.py, so an MLflow release that changes one
fails one named test instead of the server.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Iterator
from typing import Any, TypeVarTuple

import sqlalchemy as sa
from sqlalchemy import Engine, Select
from sqlalchemy.orm import Session, aliased

from flowyard.errors import DatabaseError

log = logging.getLogger(__name__)
_Row = TypeVarTuple("_Row")

# Handles on MLflow's tables: only the columns Flowyard reads, checked against MLflow's schema by
# the contract tests.
_RUNS = sa.table(
    "runs",
    sa.column("run_uuid"),
    sa.column("name"),
    sa.column("status"),
    sa.column("lifecycle_stage"),
    sa.column("start_time"),
    sa.column("experiment_id"),
)
# MLflow's statuses of a run that has not ended.
_OPEN_STATUSES = ("SCHEDULED", "RUNNING")
_EXPERIMENTS = sa.table("experiments", sa.column("experiment_id"), sa.column("name"))
_PARAMS = sa.table("params", sa.column("key"), sa.column("value"), sa.column("run_uuid"))
_LATEST_METRICS = sa.table(
    "latest_metrics",
    sa.column("key"),
    sa.column("value"),
    sa.column("step"),
    sa.column("run_uuid"),
)
_TAGS = sa.table("tags", sa.column("key"), sa.column("value"), sa.column("run_uuid"))
_MODEL_VERSIONS = sa.table("model_versions", sa.column("run_id"))
# Every logged value (MLflow indexes it on run_uuid, key, step).
_METRICS = sa.table(
    "metrics",
    sa.column("key"),
    sa.column("value"),
    sa.column("timestamp"),
    sa.column("step"),
    sa.column("is_nan"),
    sa.column("run_uuid"),
)
TABLES = (_RUNS, _EXPERIMENTS, _PARAMS, _LATEST_METRICS, _TAGS, _MODEL_VERSIONS, _METRICS)


def configure_server_app(db_url: str, artifacts_destination: str) -> None:
    """Point MLflow's server app at the workspace's database and artifact store, serving
    artifacts through its proxy (`mlflow-artifacts:/`); must run before the app is imported.

    Sets the ``_MLFLOW_SERVER_*`` variables (``mlflow.server.constants``) and ``_MLFLOW_SGI_NAME``
    that `mlflow server` sets for its workers: Flowyard mounts that app in its own ASGI app
    instead of running `mlflow server`.
    """
    os.environ.update(
        {
            "_MLFLOW_SERVER_FILE_STORE": db_url,
            "_MLFLOW_SERVER_REGISTRY_STORE": db_url,
            "_MLFLOW_SERVER_ARTIFACT_ROOT": "mlflow-artifacts:/",
            "_MLFLOW_SERVER_ARTIFACT_DESTINATION": artifacts_destination,
            "_MLFLOW_SERVER_SERVE_ARTIFACTS": "true",
            "_MLFLOW_SGI_NAME": "uvicorn",
        }
    )


def server_app() -> Any:
    """MLflow's whole tracking server as an ASGI app (its FastAPI routes, with its Flask app
    mounted under them), built from the variables :func:`configure_server_app` set.

    Wraps ``mlflow.server.fastapi_app.app``, the app `mlflow server` hands uvicorn: Flowyard mounts
    it at "/" beside its own API.
    """
    from mlflow.server.fastapi_app import app

    return app


def tracking_store() -> Any:
    """The tracking store MLflow's server app itself uses (same engine, artifact root
    `mlflow-artifacts:/`), so a run Flowyard makes is exactly what MLflow's REST API would make.

    Wraps ``mlflow.server.handlers._get_tracking_store``, which builds it from the variables
    :func:`configure_server_app` sets, once per process.
    """
    from mlflow.server.handlers import _get_tracking_store

    return _get_tracking_store()


def prepare_tables(engine: Engine) -> None:
    """Create MLflow's tables in an empty database, or upgrade them to this MLflow's schema.

    Wraps ``mlflow.store.db.utils._all_tables_exist``, ``_initialize_tables``,
    ``_get_schema_version``, ``_get_latest_schema_revision``, ``_get_alembic_config`` and
    ``_upgrade_db``: what MLflow's store does on first use, done here once, under Flowyard's
    schema lock, before several server processes open the database at once.

    Raises:
        DatabaseError: a newer MLflow has upgraded the tables past what this one knows.
    """
    import mlflow
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from mlflow.store.db import utils as mlflow_db

    if not mlflow_db._all_tables_exist(engine):
        mlflow_db._initialize_tables(engine)
        return
    current = mlflow_db._get_schema_version(engine)
    if current == mlflow_db._get_latest_schema_revision():
        return
    try:
        ScriptDirectory.from_config(mlflow_db._get_alembic_config("sqlite://")).get_revision(
            current
        )
    except CommandError as e:
        raise DatabaseError(
            f"The database's MLflow tables are at schema revision {current}, which MLflow "
            f"{mlflow.__version__} does not know: a newer MLflow upgraded them; install that "
            "MLflow (or newer) with this server."
        ) from e
    log.info("Upgrading MLflow's tables to this MLflow's schema")
    mlflow_db._upgrade_db(engine)


def run_tags(session: Session, run_id: str) -> dict[str, str]:
    """The run's tags, read from MLflow's ``tags`` table."""
    rows = session.execute(sa.select(_TAGS.c.key, _TAGS.c.value).where(_TAGS.c.run_uuid == run_id))
    return dict(rows.tuples().all())


def run_name(session: Session, run_id: str) -> str | None:
    """The run's name, read from MLflow's ``runs`` table; None for no such run."""
    name: str | None = session.scalar(sa.select(_RUNS.c.name).where(_RUNS.c.run_uuid == run_id))
    return name


def run_names(session: Session, run_ids: Collection[str]) -> dict[str, str | None]:
    """The runs' names by id, in one query; a missing run is left out."""
    rows = session.execute(
        sa.select(_RUNS.c.run_uuid, _RUNS.c.name).where(_RUNS.c.run_uuid.in_(run_ids))
    )
    return dict(rows.tuples().all())


def runs_with_tag(session: Session, key: str, values: Collection[str]) -> dict[str, str]:
    """The runs whose tag ``key`` has one of ``values``: each run's id and its value."""
    rows = session.execute(
        sa.select(_TAGS.c.run_uuid, _TAGS.c.value).where(
            _TAGS.c.key == key, _TAGS.c.value.in_(values)
        )
    )
    return dict(rows.tuples().all())


def active_experiment_names(session: Session) -> dict[str, str]:
    """The names of the experiments not deleted, by id, by name."""
    table = sa.table(
        "experiments", sa.column("experiment_id"), sa.column("name"), sa.column("lifecycle_stage")
    )
    rows = session.execute(
        sa.select(table.c.experiment_id, table.c.name)
        .where(table.c.lifecycle_stage == "active")
        .order_by(table.c.name)
    )
    return {str(i): str(n) for i, n in rows}


def run_experiments(session: Session, run_ids: Collection[str]) -> dict[str, tuple[str, str]]:
    """The runs' experiment ids and MLflow statuses by run id, in one query."""
    rows = session.execute(
        sa.select(_RUNS.c.run_uuid, _RUNS.c.experiment_id, _RUNS.c.status).where(
            _RUNS.c.run_uuid.in_(run_ids)
        )
    )
    return {str(r): (str(e), str(s)) for r, e, s in rows}


def with_run_name(query: Select[Any], run_id: Any) -> tuple[Select[Any], Any]:
    """``query`` outer-joined to MLflow's ``runs`` on ``run_id``, and the run-name column to sort
    it by."""
    return query.outerjoin(_RUNS, _RUNS.c.run_uuid == run_id), _RUNS.c.name


def run_params(session: Session, run_ids: Collection[str]) -> dict[str, dict[str, str]]:
    """Each run's parameters by run id, in one query; a run without any is left out."""
    found: dict[str, dict[str, str]] = {}
    for key, value, run_id in session.execute(
        sa.select(_PARAMS.c.key, _PARAMS.c.value, _PARAMS.c.run_uuid).where(
            _PARAMS.c.run_uuid.in_(run_ids)
        )
    ):
        found.setdefault(run_id, {})[key] = value
    return found


def latest_metrics(
    session: Session, run_ids: Collection[str]
) -> dict[str, dict[str, tuple[float, int]]]:
    """Each run's latest metrics by run id, as (value, step) by key, in one query; a run without
    any is left out."""
    found: dict[str, dict[str, tuple[float, int]]] = {}
    for key, value, step, run_id in session.execute(
        sa.select(
            _LATEST_METRICS.c.key,
            _LATEST_METRICS.c.value,
            _LATEST_METRICS.c.step,
            _LATEST_METRICS.c.run_uuid,
        )
        .where(_LATEST_METRICS.c.run_uuid.in_(run_ids))
        .order_by(_LATEST_METRICS.c.key)
    ):
        found.setdefault(run_id, {})[key] = (value, step)
    return found


MetricRow = tuple[str, str, int, int, int, float | None]


def _metric_conditions(
    run_ids: Collection[str], system: bool | None, keys: Collection[str]
) -> list[sa.ColumnElement[bool]]:
    m = _METRICS.c
    conditions: list[sa.ColumnElement[bool]] = [m.run_uuid.in_(run_ids)]
    if keys:
        conditions.append(m.key.in_(keys))
    if system is not None:
        under = m.key.startswith("system/", autoescape=True)
        conditions.append(under if system else sa.not_(under))
    return conditions


def metric_counts(
    session: Session,
    run_ids: Collection[str],
    *,
    system: bool | None = None,
    keys: Collection[str] = (),
) -> list[tuple[str, str, int]]:
    """How many values each run logged under each key, from MLflow's (run_uuid, key, step) index
    alone: (run id, key, count) in run and key order. MLflow never changes a logged value, so
    these counts change exactly when a history does."""
    m = _METRICS.c
    rows = session.execute(
        sa.select(m.run_uuid, m.key, sa.func.count())
        .where(*_metric_conditions(run_ids, system, keys))
        .group_by(m.run_uuid, m.key)
        .order_by(m.run_uuid, m.key)
    ).all()
    return [(str(r), str(k), int(n)) for r, k, n in rows]


def sampled_metric_history(
    session: Session,
    run_ids: Collection[str],
    points: int,
    *,
    system: bool | None = None,
    keys: Collection[str] = (),
    since_ms: int | None = None,
    counts: list[tuple[str, str, int]] | None = None,
) -> Iterator[MetricRow]:
    """Each run's metric histories, at most ``points`` values per run and key: rows of (run id,
    key, values logged in all, step, timestamp, value or None for NaN and infinities), in step
    order per run and key.

    A history longer than ``points`` is thinned to every k-th value by step, its first and last
    kept, as MLflow's ``get-history-bulk-interval`` samples. A whole history is read in two
    steps: its steps from MLflow's ``(run_uuid, key, step)`` index alone (no table rows), then
    only the rows of the steps kept; values logged since ``since_ms`` (a live chart's new ones,
    few) in one windowed query. ``system`` keeps only MLflow's system metrics (keys under
    ``system/``) or leaves them out; ``counts``, :func:`metric_counts` if already read."""
    m = _METRICS.c
    conditions = _metric_conditions(run_ids, system, keys)
    if since_ms is not None:
        conditions.append(m.timestamp >= since_ms)
        yield from _windowed(session, conditions, points)
        return
    if counts is None:
        counts = metric_counts(session, run_ids, system=system, keys=keys)
    small: dict[str, list[str]] = {}
    for run_id, key, total in counts:
        if total <= points:
            small.setdefault(run_id, []).append(key)
    totals = {(r, k): int(n) for r, k, n in counts}
    fetched: dict[tuple[str, str], list[MetricRow]] = {}
    for run_id, small_keys in small.items():
        for i in range(0, len(small_keys), 500):
            where = (m.run_uuid == run_id, m.key.in_(small_keys[i : i + 500]))
            for row in _values(session, where, totals):
                fetched.setdefault((row[0], row[1]), []).append(row)
    for run_id, key, total in counts:
        if total <= points:
            yield from fetched.get((run_id, key), [])
            continue
        line = (m.run_uuid == run_id, m.key == key)
        kept = _dense_steps(session, line, total, points)
        if kept is None:
            steps = session.scalars(sa.select(m.step).where(*line).order_by(m.step)).all()
            stride = -(-len(steps) // (points - 1))
            kept = sorted({*steps[::stride], steps[-1]})
        rows = [
            r
            for i in range(0, len(kept), 500)
            for r in _values(session, (*line, m.step.in_(kept[i : i + 500])), totals)
        ]
        rows.sort(key=lambda r: (r[3], r[4]))
        # Many values at one step (a metric logged without steps): thin by position.
        if len(rows) > points:
            stride = -(-len(rows) // (points - 1))
            rows = [*rows[:-1:stride], rows[-1]]
        yield from rows


def _dense_steps(
    session: Session, line: tuple[Any, ...], total: int, points: int
) -> list[int] | None:
    """The steps to keep of a line logged at each step from its first to its last (as a training
    loop logs), found from the two ends of MLflow's (run_uuid, key, step) index rather than by
    reading every step; None for a line with gaps or repeated steps. (A line that repeats as
    many steps as it skips looks dense: its sample then misses the values of skipped steps.)"""
    m = _METRICS.c
    first = session.scalar(sa.select(sa.func.min(m.step)).where(*line))
    last = session.scalar(sa.select(sa.func.max(m.step)).where(*line))
    if first is None or last is None or last - first + 1 != total:
        return None
    stride = -(-total // (points - 1))
    return sorted({*range(first, last + 1, stride), last})


def _values(
    session: Session, where: tuple[Any, ...], totals: dict[tuple[str, str], int]
) -> Iterator[MetricRow]:
    m = _METRICS.c
    query = (
        sa.select(m.run_uuid, m.key, m.step, m.timestamp, m.value, m.is_nan)
        .where(*where)
        .order_by(m.key, m.step, m.timestamp)
    )
    for run_id, key, step, timestamp, value, is_nan in session.execute(query).all():
        total = totals[(str(run_id), str(key))]
        yield _row(run_id, key, total, step, timestamp, value, is_nan)


def _row(
    run_id: Any, key: Any, total: Any, step: Any, timestamp: Any, value: Any, is_nan: Any
) -> MetricRow:
    number = None if is_nan or value is None or not math.isfinite(value) else float(value)
    return str(run_id), str(key), int(total), int(step), int(timestamp), number


def _windowed(
    session: Session, conditions: list[sa.ColumnElement[bool]], points: int
) -> Iterator[MetricRow]:
    """The rows matching ``conditions``, thinned by the database to ``points`` per line."""
    m = _METRICS.c
    line = (m.run_uuid, m.key)
    ranked = (
        sa.select(
            m.run_uuid,
            m.key,
            m.step,
            m.timestamp,
            m.value,
            m.is_nan,
            sa.func.row_number()
            .over(partition_by=line, order_by=(m.step, m.timestamp))
            .label("rank"),
            sa.func.count().over(partition_by=line).label("total"),
        )
        .where(*conditions)
        .subquery()
    )
    r = ranked.c
    # Integer division on both SQLite and PostgreSQL: the stride that keeps <= points values.
    stride = (r.total + (points - 2)) // (points - 1)
    query = (
        sa.select(r.run_uuid, r.key, r.total, r.step, r.timestamp, r.value, r.is_nan)
        .where(sa.or_(r.total <= points, (r.rank - 1) % stride == 0, r.rank == r.total))
        .order_by(r.run_uuid, r.key, r.rank)
    )
    for row in session.execute(query):
        yield _row(*row)


def experiment_names(session: Session) -> dict[str, str]:
    """Every experiment's name by its id (as the string Flowyard's API carries)."""
    # Workspaces hold tens of experiments, not thousands of them: one small read.
    rows = session.execute(sa.select(_EXPERIMENTS.c.experiment_id, _EXPERIMENTS.c.name))
    return {str(i): str(n) for i, n in rows}


def experiment_name(session: Session, experiment_id: str) -> str | None:
    """The experiment's name; None for no such experiment."""
    # MLflow keeps experiment ids as integers; Flowyard as the strings its API carries.
    key: int | str = int(experiment_id) if experiment_id.isdigit() else experiment_id
    name: str | None = session.scalar(
        sa.select(_EXPERIMENTS.c.name).where(_EXPERIMENTS.c.experiment_id == key)
    )
    return name


def open_tagged_runs(tag: str, started_before_ms: int) -> Select[Any]:
    """A query of the active runs not ended that carry the tag ``tag``, started before
    ``started_before_ms`` (milliseconds since the epoch, as MLflow keeps them): each run's id,
    experiment id, start time and the tag's value."""
    return (
        sa.select(_RUNS.c.run_uuid, _RUNS.c.experiment_id, _RUNS.c.start_time, _TAGS.c.value)
        .join(_TAGS, sa.and_(_TAGS.c.run_uuid == _RUNS.c.run_uuid, _TAGS.c.key == tag))
        .where(
            _RUNS.c.lifecycle_stage == "active",
            _RUNS.c.status.in_(_OPEN_STATUSES),
            _RUNS.c.start_time < started_before_ms,
        )
    )


def run_id_column() -> Any:
    """MLflow's ``runs.run_uuid`` column, to correlate a subquery with :func:`open_tagged_runs`."""
    return _RUNS.c.run_uuid


def with_open_run(query: Select[*_Row], run_id: Any) -> Select[*_Row]:
    """``query`` joined to MLflow's ``runs`` on ``run_id``, kept where that run has not ended."""
    return query.join(_RUNS, _RUNS.c.run_uuid == run_id).where(_RUNS.c.status.in_(_OPEN_STATUSES))


def hard_delete_run(store: Any, run_id: str) -> None:
    """Remove a run that is soft-deleted (its metadata, metrics, params and tags) for good, as
    `mlflow gc` does after deleting its artifacts.

    Wraps ``SqlAlchemyStore._hard_delete_run``, which `mlflow gc` calls.
    """
    store._hard_delete_run(run_id)


def hard_delete_experiment(store: Any, experiment_id: str) -> None:
    """Remove a soft-deleted experiment (whose runs are gone already) for good, as `mlflow gc`
    does.

    Wraps ``SqlAlchemyStore._hard_delete_experiment``, which `mlflow gc` calls.
    """
    store._hard_delete_experiment(experiment_id)


def model_source_runs(session: Session, run_ids: Collection[str]) -> set[str]:
    """Which of these runs are the source of a registered model version, read from MLflow's
    ``model_versions`` table."""
    rows = session.scalars(
        sa.select(_MODEL_VERSIONS.c.run_id).where(_MODEL_VERSIONS.c.run_id.in_(run_ids)).distinct()
    )
    return {r for r in rows if r}


def runs_tagged(session: Session, run_ids: Collection[str], key: str) -> dict[str, str]:
    """The value of tag ``key`` on each of these runs that has it."""
    rows = session.execute(
        sa.select(_TAGS.c.run_uuid, _TAGS.c.value).where(
            _TAGS.c.run_uuid.in_(run_ids), _TAGS.c.key == key
        )
    )
    return dict(rows.tuples().all())


def experiment_keys(
    session: Session, experiment_id: str, newest: int = 1000
) -> tuple[list[str], list[str]]:
    """The parameter and metric keys the experiment's ``newest`` live runs have, each sorted:
    the columns of its table in the studio (read from an index, whatever the experiment's
    size; migration 0010)."""
    key: int | str = int(experiment_id) if experiment_id.isdigit() else experiment_id
    runs = (
        sa.select(_RUNS.c.run_uuid)
        .where(_RUNS.c.experiment_id == key, _RUNS.c.lifecycle_stage == "active")
        .order_by(_RUNS.c.start_time.desc())
        .limit(newest)
    )
    params = session.scalars(
        sa.select(_PARAMS.c.key).where(_PARAMS.c.run_uuid.in_(runs)).distinct()
    )
    metrics = session.scalars(
        sa.select(_LATEST_METRICS.c.key).where(_LATEST_METRICS.c.run_uuid.in_(runs)).distinct()
    )
    return sorted(str(k) for k in params), sorted(str(k) for k in metrics)


def experiment_run_counts(session: Session) -> dict[str, int]:
    """How many live runs each experiment has, by its id (as a string)."""
    rows = session.execute(
        sa.select(_RUNS.c.experiment_id, sa.func.count())
        .where(_RUNS.c.lifecycle_stage == "active")
        .group_by(_RUNS.c.experiment_id)
    )
    return {str(i): int(n) for i, n in rows}


def _searched_runs(session: Any, store: Any, experiment_id: str, filter_string: str) -> Any:
    """``select(run_uuid)`` of the experiment's live runs that ``filter_string`` selects, the
    filter read exactly as MLflow's search reads it: the first half of the store's
    ``_search_runs`` (``SearchUtils.parse_search_filter``, ``_get_sqlalchemy_filter_clauses``,
    the store's ``_get_dialect``), without the loading of whole runs that follows it.

    Raises:
        MlflowException: MLflow refuses the filter.
    """
    from mlflow.store.tracking.dbmodels.models import SqlRun
    from mlflow.store.tracking.sqlalchemy_store import _get_sqlalchemy_filter_clauses
    from mlflow.utils.search_utils import SearchUtils

    parsed = SearchUtils.parse_search_filter(filter_string)
    attributes, joined, datasets = _get_sqlalchemy_filter_clauses(
        parsed, session, store._get_dialect()
    )
    runs = sa.select(SqlRun.run_uuid)
    for clause in joined:
        runs = runs.join(clause)
    for dataset in datasets:
        runs = runs.join(dataset, SqlRun.run_uuid == dataset.c.destination_id)
    key: int | str = int(experiment_id) if experiment_id.isdigit() else experiment_id
    return runs.where(SqlRun.experiment_id == key, SqlRun.lifecycle_stage == "active", *attributes)


def page_run_ids(
    store: Any, experiment_id: str, filter_string: str, order_by: str, offset: int, limit: int
) -> list[str]:
    """The ids of a page of the experiment's live runs that ``filter_string`` selects, in the
    order MLflow's ``search_runs`` gives for ``order_by`` (one term of its syntax).

    MLflow's search sorts every run the filter selects before it cuts a page, and puts a
    ``CASE WHEN start_time IS NULL`` first even for its default order, so no index can hand it
    the newest runs in order: 0.3-0.6 s a page at 20,000 runs in an experiment. This is the same
    order in terms an index serves (``NULLS LAST`` in place of the ``CASE``; migration 0010's
    index on start time) over ids alone, so a start-time page stops after ``offset + limit``
    rows; a metric, parameter or tag is joined on its key as MLflow's outer join does.
    ``tests/test_mlflow_internals.py`` checks the order against MLflow's own on every kind of key.

    Raises:
        MlflowException: MLflow refuses the filter or the order.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
    from mlflow.utils.search_utils import SearchUtils

    kind, key, ascending = SearchUtils.parse_order_by_for_search_runs(order_by)
    key = SearchUtils.translate_key_alias(key)

    def ordered(column: Any, nulls_last: bool = True) -> None:
        keys.append(column)
        term = column.asc() if ascending else column.desc()
        terms.append(term.nulls_last() if nulls_last else term)

    keys: list[Any] = []
    terms: list[Any] = []
    with store.ManagedSessionMaker() as session:
        runs = _searched_runs(session, store, experiment_id, filter_string)
        if SearchUtils.is_string_attribute(kind, key, "=") or SearchUtils.is_numeric_attribute(
            kind, key, "="
        ):
            ordered(getattr(SqlRun, SqlRun.get_attribute_name(key)))
        else:
            entity: Any
            if SearchUtils.is_metric(kind, "="):
                entity = aliased(SqlLatestMetric)
            elif SearchUtils.is_param(kind, "="):
                entity = aliased(SqlParam)
            elif SearchUtils.is_tag(kind, "="):
                entity = aliased(SqlTag)
            else:
                raise MlflowException.invalid_parameter_value(
                    f"Invalid identifier type '{kind}' to order runs by"
                )
            # Joined on the table itself, not on a subquery of it as MLflow does: SQLite
            # scans a materialised subquery once for every run.
            runs = runs.outerjoin(
                entity, sa.and_(entity.run_uuid == SqlRun.run_uuid, entity.key == key)
            )
            if SearchUtils.is_metric(kind, "="):
                # MLflow's order of a metric: values, then NaN, then runs without it.
                last = sa.case(
                    (entity.is_nan.is_(sa.true()), 1), (entity.value.is_(None), 2), else_=0
                )
                keys.append(last)
                terms.append(last)
                ordered(entity.value, nulls_last=False)
            else:
                ordered(entity.value)
        if not (kind == SearchUtils._ATTRIBUTE_IDENTIFIER and key == SqlRun.start_time.key):
            keys.append(SqlRun.start_time)
            terms.append(SqlRun.start_time.desc())
        terms.append(SqlRun.run_uuid)
        # The order's own columns are selected too: PostgreSQL sorts a DISTINCT (MLflow's,
        # for joins that repeat a run) only by what it selects.
        query = runs.add_columns(*keys).distinct().order_by(*terms).offset(offset).limit(limit)
        return [str(row[0]) for row in session.execute(query)]


def runs_by_ids(store: Any, run_ids: list[str]) -> list[Any]:
    """MLflow's ``Run`` entities of ``run_ids`` (info, parameters, latest metrics and tags; not
    dataset inputs or model outputs), in the order of ``run_ids``; ids of no run are left out.

    What the store's ``_search_runs`` loads, by primary key: its search for
    ``attributes.run_id IN (...)`` scans the experiment (SQLite picks the experiment index), so
    a page of 50 runs took 150 ms at 20,000 runs. Wraps ``SqlRun``, the store's
    ``_get_eager_run_query_options`` and ``SqlRun.to_mlflow_entity``.
    """
    from mlflow.store.tracking.dbmodels.models import SqlRun

    if not run_ids:
        return []
    with store.ManagedSessionMaker() as session:
        rows = session.scalars(
            sa.select(SqlRun)
            .options(*store._get_eager_run_query_options())
            .where(SqlRun.run_uuid.in_(run_ids))
        )
        found = {row.run_uuid: row.to_mlflow_entity() for row in rows}
    return [found[i] for i in run_ids if i in found]


def metric_ranges(
    store: Any, experiment_id: str, filter_string: str
) -> dict[str, tuple[float, float]]:
    """Each metric's lowest and highest latest value over the experiment's live runs that
    ``filter_string`` (MLflow's search syntax) selects: one aggregate query, whatever the number
    of runs, with the filter read exactly as MLflow's search reads it.

    Raises:
        MlflowException: MLflow refuses the filter.
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric

    with store.ManagedSessionMaker() as session:
        runs = _searched_runs(session, store, experiment_id, filter_string)
        rows = session.execute(
            sa.select(
                SqlLatestMetric.key,
                sa.func.min(SqlLatestMetric.value),
                sa.func.max(SqlLatestMetric.value),
            )
            .where(SqlLatestMetric.run_uuid.in_(runs), SqlLatestMetric.is_nan.is_(sa.false()))
            .group_by(SqlLatestMetric.key)
        )
        return {str(k): (float(low), float(high)) for k, low, high in rows}
