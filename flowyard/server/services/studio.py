"""What the studio's pages show: jobs joined with their MLflow runs, in a few indexed queries.

MLflow's tables (``runs``, ``experiments``, ``params``, ``latest_metrics``, ``tags``) live in the
same database as Flowyard's, so a page reads them directly instead of going through MLflow's store
one run at a time: a page of jobs costs a count, the page itself, and one ``IN`` query each for its
parameters and latest metrics, whatever the number of jobs in the workspace.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.schemas import JobStatus
from flowyard.server.db.models import Compute, Job, Snapshot
from flowyard.server.services import computes
from flowyard.server.services import jobs as job_service
from flowyard.snapshot import FileEntry

# Lightweight handles on MLflow's tables: only the columns the studio reads.
RUNS = sa.table(
    "runs",
    sa.column("run_uuid"),
    sa.column("name"),
    sa.column("status"),
    sa.column("artifact_uri"),
    sa.column("lifecycle_stage"),
)
EXPERIMENTS = sa.table("experiments", sa.column("experiment_id"), sa.column("name"))
PARAMS = sa.table("params", sa.column("key"), sa.column("value"), sa.column("run_uuid"))
LATEST_METRICS = sa.table(
    "latest_metrics",
    sa.column("key"),
    sa.column("value"),
    sa.column("step"),
    sa.column("run_uuid"),
)
TAGS = sa.table("tags", sa.column("key"), sa.column("value"), sa.column("run_uuid"))

PAGE_SIZE = 50
# A table stays readable on a laptop with this many parameter and metric columns; the job page
# shows them all.
KEY_COLUMNS = 4
ACTIVE = [JobStatus.QUEUED, *computes.ACTIVE]
SORTS: dict[str, Any] = {
    "submitted": Job.submitted_at,
    "name": RUNS.c.name,
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


def experiment_names(session: Session) -> dict[str, str]:
    # Workspaces hold tens of experiments, not thousands of them: one small read.
    rows = session.execute(sa.select(EXPERIMENTS.c.experiment_id, EXPERIMENTS.c.name))
    return {str(i): str(n) for i, n in rows}


def jobs_page(session: Session, filters: JobFilters) -> JobsPage:
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
    column = SORTS.get(filters.sort, Job.submitted_at)
    tiebreak = Job.id.desc() if filters.desc else Job.id.asc()
    # The page's ids first, from an index alone where the sort allows (see migration 0004), so a
    # deep page skips index entries rather than whole rows; then only those rows in full.
    ids_query = sa.select(Job.id).where(*conditions)
    if filters.sort == "name":
        ids_query = ids_query.outerjoin(RUNS, RUNS.c.run_uuid == Job.id)
    ids_query = (
        ids_query.order_by(column.desc() if filters.desc else column.asc(), tiebreak)
        .limit(PAGE_SIZE)
        .offset((page - 1) * PAGE_SIZE)
    )
    page_ids = list(session.scalars(ids_query))
    names = experiment_names(session)
    found = {
        job.id: JobRow(
            job=job, run_name=name, experiment=names.get(job.experiment_id, job.experiment_id)
        )
        for job, name in session.execute(
            sa.select(Job, RUNS.c.name)
            .outerjoin(RUNS, RUNS.c.run_uuid == Job.id)
            .where(Job.id.in_(page_ids))
        )
    }
    rows = [found[i] for i in page_ids if i in found]
    by_id = found
    if by_id:
        for key, value, run_id in session.execute(
            sa.select(PARAMS.c.key, PARAMS.c.value, PARAMS.c.run_uuid).where(
                PARAMS.c.run_uuid.in_(by_id)
            )
        ):
            by_id[run_id].params[key] = value
        for key, value, run_id in session.execute(
            sa.select(
                LATEST_METRICS.c.key, LATEST_METRICS.c.value, LATEST_METRICS.c.run_uuid
            ).where(LATEST_METRICS.c.run_uuid.in_(by_id))
        ):
            by_id[run_id].metrics[key] = value
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
        options=_filter_options(session, names),
    )


def _common_keys(dicts: Any) -> list[str]:
    """The keys most rows of the page share, first by how many have them, then by name."""
    counts: Counter[str] = Counter()
    for d in dicts:
        counts.update(d.keys())
    ranked = sorted(counts, key=lambda k: (-counts[k], k))
    return sorted(ranked[:KEY_COLUMNS])


def _filter_options(session: Session, names: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    # DISTINCT over an indexed column reads the index only: a few milliseconds at 10,000 jobs.
    def distinct(column: Any) -> list[str]:
        return [str(v) for v in session.scalars(sa.select(column).distinct().order_by(column))]

    known_computes = set(distinct(Job.compute)) | set(computes.names(session)) - {computes.LOCAL}
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
    rerunnable: bool


def job_detail(session: Session, job_id: str) -> JobDetail:
    job = job_service.get(session, job_id, events=True)
    run_name = session.scalar(sa.select(RUNS.c.name).where(RUNS.c.run_uuid == job_id))
    experiment = session.scalar(
        sa.select(EXPERIMENTS.c.name).where(
            EXPERIMENTS.c.experiment_id == _int_or(job.experiment_id)
        )
    )
    params = dict(
        session.execute(sa.select(PARAMS.c.key, PARAMS.c.value).where(PARAMS.c.run_uuid == job_id))
        .tuples()
        .all()
    )
    metrics = {
        key: (value, step)
        for key, value, step in session.execute(
            sa.select(LATEST_METRICS.c.key, LATEST_METRICS.c.value, LATEST_METRICS.c.step)
            .where(LATEST_METRICS.c.run_uuid == job_id)
            .order_by(LATEST_METRICS.c.key)
        )
    }
    tags = dict(
        session.execute(sa.select(TAGS.c.key, TAGS.c.value).where(TAGS.c.run_uuid == job_id))
        .tuples()
        .all()
    )
    return JobDetail(
        job=job,
        run_name=run_name,
        experiment=experiment or job.experiment_id,
        params=dict(sorted(params.items())),
        metrics=metrics,
        tags=tags,
        snapshot=session.get(Snapshot, job.snapshot_id),
        rerunnable=job.compute != computes.LOCAL and session.get(Compute, job.compute) is not None,
    )


def _int_or(value: str) -> int | str:
    # MLflow keeps experiment ids as integers; Flowyard as the strings its API carries.
    return int(value) if value.isdigit() else value


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


@dataclass
class Compared:
    rows: list[JobRow]
    param_keys: list[str]
    differing: set[str]
    metric_keys: list[str]


def compare(session: Session, job_ids: list[str]) -> Compared:
    """The jobs side by side; unknown ids raise NotFoundError like a job page would."""
    names = experiment_names(session)
    rows = []
    for job_id in dict.fromkeys(job_ids):
        detail = job_detail(session, job_id)
        rows.append(
            JobRow(
                job=detail.job,
                run_name=detail.run_name,
                experiment=names.get(detail.job.experiment_id, detail.job.experiment_id),
                params=detail.params,
                metrics={k: v for k, (v, _) in detail.metrics.items()},
            )
        )
    param_keys = sorted({k for r in rows for k in r.params})
    differing = {k for k in param_keys if len({r.params.get(k) for r in rows}) > 1}
    metric_keys = sorted({k for r in rows for k in r.metrics})
    return Compared(rows, param_keys, differing, metric_keys)
