"""What the studio's pages show: jobs joined with their MLflow runs, in a few indexed queries.

MLflow's tables live in the same database as Flowyard's, so a page reads them directly (through
:mod:`flowyard.server.mlflow_internals`) instead of going through MLflow's store one run at a
time: a page of jobs costs a count, the page itself, and one ``IN`` query each for its run names,
parameters and latest metrics, whatever the number of jobs in the workspace.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.compute.base import ComputeTarget
from flowyard.schemas import JobStatus
from flowyard.server import mlflow_internals
from flowyard.server.db.models import Job, Snapshot
from flowyard.server.services import computes
from flowyard.server.services import jobs as job_service
from flowyard.snapshot import FileEntry

PAGE_SIZE = 50
# A table stays readable on a laptop with this many parameter and metric columns; the job page
# shows them all.
KEY_COLUMNS = 4
ACTIVE = [JobStatus.QUEUED, *computes.ACTIVE]
# The run name is MLflow's: its column comes from the join in jobs_page.
SORTS: dict[str, Any] = {
    "submitted": Job.submitted_at,
    "name": None,
    "status": Job.status,
    "compute": Job.compute,
    "user": Job.user,
}


@dataclass(frozen=True)
class JobFilters:
    status: str | None = None
    compute: str | None = None
    experiment: str | None = None
    user: str | None = None
    sort: str = "submitted"
    desc: bool = True
    page: int = 1

    def query(self, **changes: Any) -> dict[str, str]:
        """These filters as URL query parameters, with ``changes`` applied; empty ones left out."""
        values = {
            "status": self.status,
            "compute": self.compute,
            "experiment": self.experiment,
            "user": self.user,
            "sort": self.sort,
            "order": "desc" if self.desc else "asc",
            "page": str(self.page),
        }
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}


@dataclass
class JobRow:
    job: Job
    run_name: str | None
    experiment: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class JobsPage:
    rows: list[JobRow]
    total: int
    page: int
    pages: int
    param_keys: list[str]
    metric_keys: list[str]
    any_active: bool
    options: dict[str, list[tuple[str, str]]]


def utc(at: datetime | None) -> datetime | None:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    return at if at is None or at.tzinfo else at.replace(tzinfo=UTC)


def jobs_page(session: Session, filters: JobFilters, with_options: bool = True) -> JobsPage:
    """A page of jobs; ``with_options=False`` leaves out the filters' choices (the live
    refresh's fragment shows none: at 100,000 jobs they are most of a page's time)."""
    conditions = []
    if filters.status:
        conditions.append(Job.status == filters.status)
    if filters.compute:
        conditions.append(Job.compute == filters.compute)
    if filters.experiment:
        conditions.append(Job.experiment_id == filters.experiment)
    if filters.user:
        conditions.append(Job.user == filters.user)
    total = session.scalar(sa.select(sa.func.count()).select_from(Job).where(*conditions)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(filters.page, 1), pages)
    column = SORTS.get(filters.sort) or Job.submitted_at
    tiebreak = Job.id.desc() if filters.desc else Job.id.asc()
    # The page's ids first, from an index alone where the sort allows (see migration 0004), so a
    # deep page skips index entries rather than whole rows; then only those rows in full.
    ids_query = sa.select(Job.id).where(*conditions)
    if filters.sort == "name":
        ids_query, column = mlflow_internals.with_run_name(ids_query, Job.id)
    ids_query = (
        ids_query.order_by(column.desc() if filters.desc else column.asc(), tiebreak)
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    )
    page_ids = list(session.scalars(ids_query))
    names = mlflow_internals.experiment_names(session)
    run_names = mlflow_internals.run_names(session, page_ids)
    found = {
        job.id: JobRow(
            job=job,
            run_name=run_names.get(job.id),
            experiment=names.get(job.experiment_id, job.experiment_id),
        )
        for job in session.scalars(sa.select(Job).where(Job.id.in_(page_ids)))
    }
    rows = [found[i] for i in page_ids if i in found]
    if found:
        for run_id, params in mlflow_internals.run_params(session, list(found)).items():
            found[run_id].params = params
        for run_id, metrics in mlflow_internals.latest_metrics(session, list(found)).items():
            found[run_id].metrics = {key: value for key, (value, _step) in metrics.items()}
    any_active = (
        session.scalar(sa.select(Job.id).where(Job.status.in_(ACTIVE)).limit(1)) is not None
    )
    return JobsPage(
        rows=rows,
        total=total,
        page=page,
        pages=pages,
        param_keys=_common_keys(r.params for r in rows),
        metric_keys=_common_keys(r.metrics for r in rows),
        any_active=any_active,
        options=_filter_options(session, names) if with_options else {},
    )


def _common_keys(dicts: Any) -> list[str]:
    """The keys most rows of the page share, first by how many have them, then by name."""
    counts: Counter[str] = Counter()
    for d in dicts:
        counts.update(d.keys())
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    return sorted(ranked[:KEY_COLUMNS])


def distinct_values(column: Any) -> Any:
    """The column's distinct values, ascending, by one index seek each (a recursive query that
    asks for the least value above the last one): a plain DISTINCT reads the whole index, about
    13 ms a column at 100,000 jobs, where this takes a seek per value."""
    found = sa.select(sa.func.min(column).label("v")).cte("found", recursive=True)
    following = sa.select(column).where(column > found.c.v).order_by(column).limit(1)
    found = found.union_all(
        sa.select(following.scalar_subquery()).select_from(found).where(found.c.v.is_not(None))
    )
    return sa.select(found.c.v).where(found.c.v.is_not(None))


def _filter_options(session: Session, names: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    def distinct(column: Any) -> list[str]:
        return [str(v) for v in session.scalars(distinct_values(column))]

    registered = {c.name for c in computes.all_computes(session)}
    known_computes = set(distinct(Job.compute)) | registered
    return {
        "status": [(s.value, s.value) for s in JobStatus],
        "compute": [(c, c) for c in sorted(known_computes)],
        "experiment": sorted(
            ((e, names.get(e, e)) for e in distinct(Job.experiment_id)), key=lambda o: o[1]
        ),
        "user": [(u, u) for u in distinct(Job.user)],
    }


@dataclass
class JobDetail:
    job: Job
    run_name: str | None
    experiment: str
    params: dict[str, str]
    metrics: dict[str, tuple[float, int]]
    tags: dict[str, str]
    snapshot: Snapshot | None
    # The job's compute's target; None when the compute is no longer registered.
    target: ComputeTarget | None

    @property
    def model_metrics(self) -> dict[str, tuple[float, int]]:
        """The metrics the job logged itself: MLflow's system metrics (``system/…``, the
        System tab's) left out."""
        return {k: v for k, v in self.metrics.items() if not k.startswith("system/")}

    @property
    def rerunnable(self) -> bool:
        """Whether the workspace can start a re-run's runner (see reruns.rerun)."""
        return self.target is not None and self.target.starts_runners


def job_detail(session: Session, job_id: str) -> JobDetail:
    job = job_service.get(session, job_id, events=True)
    params = mlflow_internals.run_params(session, [job_id]).get(job_id, {})
    return JobDetail(
        job=job,
        run_name=mlflow_internals.run_name(session, job_id),
        experiment=mlflow_internals.experiment_name(session, job.experiment_id)
        or job.experiment_id,
        params=dict(sorted(params.items())),
        metrics=mlflow_internals.latest_metrics(session, [job_id]).get(job_id, {}),
        tags=mlflow_internals.run_tags(session, job_id),
        snapshot=session.get(Snapshot, job.snapshot_id),
        target=computes.lookup(session, job.compute),
    )


def snapshot_tree(manifest: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest as nested folders, folders first: {name: subtree} for a folder,
    {name: FileEntry} for a file."""
    root: dict[str, Any] = {}
    for entry in manifest:
        *folders, name = entry["path"].split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[name] = FileEntry.from_json(entry)
    return _folders_first(root)


def _folders_first(node: dict[str, Any]) -> dict[str, Any]:
    items = sorted(node.items(), key=lambda kv: (not isinstance(kv[1], dict), kv[0].lower()))
    return {k: _folders_first(v) if isinstance(v, dict) else v for k, v in items}
