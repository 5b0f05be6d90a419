"""Benchmark the studio's tables and pages against MLflow's UI on the same data.

Fills a fresh SQLite workspace with jobs and their MLflow runs, parameters, latest metrics, tags
and events by bulk SQL, starts `flowyard server` on it, and times the jobs table (sorted,
filtered, deep pages, the live refresh), the experiment table (MLflow search filter and sort)
and job pages over loopback. Each table case has a peer: the request MLflow's UI itself sends for
the same rows (`/ajax-api/2.0/mlflow/runs/search` with the same filter, order and offset),
answered by the same server process from the same database. Cases and their peers are timed in
interleaved rounds, and the ratios printed.

    python bench/studio.py                 # 10,000 jobs, 100 rounds
    python bench/studio.py --table         # the 100,000-job table case, 50 rounds
    python bench/studio.py --quick         # smoke run: 1,000 jobs, 20 rounds
    python bench/studio.py --jobs 1000 --requests 20
    python bench/studio.py --json results.json
    python bench/studio.py --only-charts   # the chart case alone (see bench/studio_charts.py)

The chart case (bench/studio_charts.py) opens a job with 20 metrics x 5,000 steps, finished and
live, in Chromium, against MLflow's own UI on the same runs.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from flowyard.server.db.engine import prepare_database
from flowyard.server.workspace_folder import WorkspaceFolder
from studio_charts import chart_report, fill_charts

from common import (
    FLOWYARD_HEALTH,
    HOST,
    PYTHON,
    auth_headers,
    bench_parser,
    free_port,
    header_line,
    make_console,
    median,
    print_goals,
    quantile,
    running,
    write_json,
)

GOALS_MS = {"jobs page": 150.0, "experiment": 150.0, "job page": 100.0}
EXPERIMENTS = ("fraud-model", "churn", "demand-forecast", "ranking", "sandbox")
COMPUTES = ("local", "cpu-cluster", "gpu-cluster", "ray-cluster")
USERS = ("alice", "bob", "carol", "dan", "erin", "frank")
STATUSES = ("completed",) * 80 + ("failed",) * 12 + ("canceled",) * 4 + ("running", "queued") * 2
PARAMS = ("alpha", "l1_ratio", "steps")
METRICS = ("rmse", "mae", "r2")
console = make_console()


@dataclass(frozen=True)
class Counts:
    jobs: int  # jobs (with their MLflow runs) in the workspace
    requests: int  # timed requests per case, after 5 warm-up ones


FULL = Counts(jobs=10_000, requests=100)
TABLE = Counts(jobs=100_000, requests=50)
QUICK = Counts(jobs=1000, requests=20)
PAGE = 50
# MLflow's search orders by a metric through an unindexed subquery join: about 1 s a page at
# 10,000 jobs (2,000 runs an experiment), for MLflow's UI and the experiment table alike.
METRIC_SORT_MAX_JOBS = 10_000


def fill(url: str, n_jobs: int) -> list[str]:
    """Insert ``n_jobs`` jobs with everything a studio page reads; returns their ids."""
    rng = random.Random(42)
    engine = sa.create_engine(url)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    manifest = [
        {"path": f"src/module_{i}.py", "digest": f"{i:064x}", "size": 1000 + i, "executable": False}
        for i in range(30)
    ] + [{"path": "MLproject", "digest": "f" * 64, "size": 300, "executable": False}]
    snapshot_id = "e" * 64
    ids = [uuid.uuid4().hex for _ in range(n_jobs)]
    with engine.begin() as conn:
        for i, name in enumerate(EXPERIMENTS, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, "
                    "lifecycle_stage, creation_time, last_update_time) "
                    "VALUES (:i, :n, :a, 'active', :t, :t)"
                ),
                {"i": i, "n": name, "a": f"mlflow-artifacts:/{i}", "t": now_ms},
            )
        conn.execute(
            sa.text(
                "INSERT INTO flowyard_snapshots (id, file_count, total_bytes, manifest, "
                "created_at, used_at) VALUES (:id, :n, :b, :m, :t, :t)"
            ),
            {"id": snapshot_id, "n": len(manifest), "b": 40_000, "m": _json(manifest), "t": now},
        )
        runs, jobs, params, metrics, tags, events = [], [], [], [], [], []
        for k, run_id in enumerate(ids):
            exp = rng.randint(1, len(EXPERIMENTS))
            status = rng.choice(STATUSES)
            submitted = now - timedelta(minutes=n_jobs - k)
            started = submitted + timedelta(seconds=5)
            ended = started + timedelta(seconds=rng.randint(10, 3000))
            final = status in ("completed", "failed", "canceled")
            user = rng.choice(USERS)
            compute = rng.choice(COMPUTES)
            start_ms = int(submitted.timestamp() * 1000)
            runs.append(
                {
                    "run_uuid": run_id,
                    "name": f"run-{k}",
                    "source_type": "PROJECT",
                    "source_name": "git@example.com/repo",
                    "entry_point_name": "main",
                    "user_id": user,
                    "status": {
                        "completed": "FINISHED",
                        "failed": "FAILED",
                        "canceled": "KILLED",
                    }.get(status, "RUNNING"),
                    "start_time": start_ms,
                    "end_time": int(ended.timestamp() * 1000) if final else None,
                    "source_version": "",
                    "lifecycle_stage": "active",
                    "artifact_uri": f"mlflow-artifacts:/{exp}/{run_id}/artifacts",
                    "experiment_id": exp,
                }
            )
            values = {"alpha": f"{rng.random():.3f}", "l1_ratio": "0.5", "steps": "20"}
            params += [{"key": p, "value": values[p], "run_uuid": run_id} for p in PARAMS]
            metrics += [
                {
                    "key": m,
                    "value": rng.random() * 100,
                    "timestamp": start_ms,
                    "step": 19,
                    "is_nan": False,
                    "run_uuid": run_id,
                }
                for m in METRICS
            ]
            tags += [
                {"key": "mlflow.user", "value": user, "run_uuid": run_id},
                {"key": "mlflow.runName", "value": f"run-{k}", "run_uuid": run_id},
                {"key": "flowyard.snapshot", "value": snapshot_id, "run_uuid": run_id},
                {"key": "flowyard.compute", "value": compute, "run_uuid": run_id},
            ]
            jobs.append(
                {
                    "id": run_id,
                    "experiment_id": str(exp),
                    "snapshot_id": snapshot_id,
                    "project_uri": "git@example.com/repo",
                    "entry_point": "main",
                    "parameters": _json(values),
                    "environment": _json({"manager": "local"}),
                    "options": _json({"command": "python train.py --alpha 0.5"}),
                    "compute": compute,
                    "status": status,
                    "priority": 0,
                    "cancel_requested": False,
                    "user": user,
                    "attempt": 1,
                    "submitted_at": submitted,
                    "started_at": started if status != "queued" else None,
                    "ended_at": ended if final else None,
                    "error": _json({"type": "ValueError", "message": "bad input"})
                    if status == "failed"
                    else None,
                    "log_size": 0,
                }
            )
            for step, (to, at) in enumerate(
                [("queued", submitted), ("preparing", started), ("running", started)]
                + ([(status, ended)] if final else [])
            ):
                events.append(
                    {
                        "job_id": run_id,
                        "at": at,
                        "from_status": None,
                        "to_status": to,
                        "reason": f"step {step}",
                    }
                )
        for table, rows in (
            ("runs", runs),
            ("params", params),
            ("latest_metrics", metrics),
            ("metrics", metrics),
            ("tags", tags),
            ("flowyard_jobs", jobs),
            ("flowyard_job_events", events),
        ):
            columns = ", ".join(f'"{c}"' for c in rows[0])
            marks = ", ".join(f":{c}" for c in rows[0])
            conn.execute(sa.text(f"INSERT INTO {table} ({columns}) VALUES ({marks})"), rows)
    engine.dispose()
    return ids


def _chart_jobs(url: str) -> tuple[str, str]:
    """Two completed jobs: the chart case's finished one, and one it makes live."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id FROM flowyard_jobs WHERE status='completed' LIMIT 2")
        ).scalars()
        finished, live = list(found)
    engine.dispose()
    return finished, live


def _json(value: object) -> str:
    import json

    return json.dumps(value)


def main() -> int:
    parser = bench_parser(__doc__, "1,000 jobs, 20 requests per page")
    parser.add_argument("--jobs", type=int, help="jobs in the workspace (default 10,000)")
    parser.add_argument("--requests", type=int, help="timed rounds (default 100)")
    parser.add_argument("--table", action="store_true", help="the 100,000-job table case")
    parser.add_argument(
        "--chart-rounds", type=int, help="rounds of the chart case in Chromium (default 3)"
    )
    parser.add_argument("--only-charts", action="store_true", help="only the chart case")
    args = parser.parse_args()
    counts = QUICK if args.quick else TABLE if args.table else FULL
    if args.jobs:
        counts = replace(counts, jobs=args.jobs)
    if args.requests:
        counts = replace(counts, requests=args.requests)
    console.print(header_line(args.quick, f"{counts.jobs:,} jobs, {counts.requests} rounds"))
    with tempfile.TemporaryDirectory(prefix="flowyard-bench-studio-") as tmp:
        folder = WorkspaceFolder.create(Path(tmp) / "ws", "bench")
        prepare_database(folder.db_url, folder.name)
        started = time.perf_counter()
        ids = fill(folder.db_url, counts.jobs)
        print(f"filled {counts.jobs:,} jobs in {time.perf_counter() - started:.1f} s")
        port = free_port()
        cmd = [PYTHON, "-m", "flowyard.cli", "server", "--workspace", str(folder.path)]
        cmd += ["--port", str(port)]
        base = f"http://{HOST}:{port}"
        finished, live = _chart_jobs(folder.db_url)
        fill_charts(folder.db_url, finished, live)
        with running(cmd, base + FLOWYARD_HEALTH, Path(tmp) / "server.log"):
            results, checked = ([], []) if args.only_charts else report(base, ids, counts.requests)
            rounds = args.chart_rounds or (1 if args.quick else 3)
            charts, chart_goals = chart_report(
                base, auth_headers(base), folder.db_url, finished, live, rounds
            )
            results += charts
            checked += chart_goals
    print_goals(console, checked)
    if args.json:
        write_json(args.json, args.quick, counts, console, results=results, goals=checked)
    return 0


Request = tuple[str, str, dict[str, object] | None]


def _search(filter_string: str = "", order_by: str = "", offset: int = 0) -> Request:
    """What MLflow's UI sends for a page of runs: its own search endpoint."""
    import base64
    import json

    body: dict[str, object] = {
        "experiment_ids": [str(i) for i in range(1, len(EXPERIMENTS) + 1)],
        "filter": filter_string,
        "max_results": PAGE,
        "run_view_type": "ACTIVE_ONLY",
        "order_by": [order_by] if order_by else [],
    }
    if offset:
        body["page_token"] = base64.b64encode(json.dumps({"offset": offset}).encode()).decode()
    return ("POST", "/ajax-api/2.0/mlflow/runs/search", body)


def _one_experiment(request: Request) -> Request:
    method, path, body = request
    return (method, path, {**(body or {}), "experiment_ids": ["1"]})


def report(base: str, ids: list[str], n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Time each case and its peer in interleaved rounds; returns the results and the goals."""
    rng = random.Random(7)
    pages = -(-len(ids) // PAGE)
    deep = max(1, pages * 3 // 4)
    rmse_cut = "metrics.rmse < 50"
    # (page, case, the studio's request, its peer in MLflow's UI or None)
    cases: list[tuple[str, str, Callable[[], Request], Callable[[], Request] | None]] = [
        (
            "jobs page",
            "newest first",
            lambda: ("GET", "/studio/jobs", None),
            lambda: _search(order_by="attributes.start_time DESC"),
        ),
        (
            "jobs page",
            "live refresh fragment",
            lambda: ("GET", "/studio/jobs?fragment=1", None),
            lambda: _search(order_by="attributes.start_time DESC"),
        ),
        (
            "jobs page",
            "status=failed, sorted by run name",
            lambda: ("GET", "/studio/jobs?status=failed&sort=name&order=asc", None),
            lambda: _search("attributes.status = 'FAILED'", "attributes.run_name ASC"),
        ),
        (
            "jobs page",
            "user + compute filter, page 3",
            lambda: ("GET", "/studio/jobs?user=alice&compute=cpu-cluster&page=3", None),
            lambda: _search(
                "tags.`mlflow.user` = 'alice' and tags.`flowyard.compute` = 'cpu-cluster'",
                "attributes.start_time DESC",
                offset=2 * PAGE,
            ),
        ),
        (
            "jobs page",
            f"page {deep} of {pages} (deep offset)",
            lambda: ("GET", f"/studio/jobs?page={deep}", None),
            lambda: _search(order_by="attributes.start_time DESC", offset=(deep - 1) * PAGE),
        ),
        (
            "experiment",
            "experiment table, newest first",
            lambda: ("GET", "/studio/experiments/1", None),
            lambda: _one_experiment(_search(order_by="attributes.start_time DESC")),
        ),
        (
            "experiment",
            f"experiment table, {rmse_cut} and steps = 20",
            lambda: (
                "GET",
                f"/studio/experiments/1?filter={rmse_cut} and params.steps = '20'",
                None,
            ),
            lambda: _one_experiment(
                _search(f"{rmse_cut} and params.steps = '20'", "attributes.start_time DESC")
            ),
        ),
        ("job page", "random job", lambda: ("GET", f"/studio/jobs/{rng.choice(ids)}", None), None),
    ]
    # Above METRIC_SORT_MAX_JOBS MLflow's own search sorts by a metric in seconds a page: the
    # studio's case runs alone there.
    metric_peer = len(ids) <= METRIC_SORT_MAX_JOBS

    def metric_sort() -> Request:
        return _one_experiment(_search(rmse_cut, "metrics.rmse ASC"))

    cases.insert(
        -1,
        (
            "experiment",
            f"experiment table, {rmse_cut}, sorted by rmse",
            lambda: (
                "GET",
                f"/studio/experiments/1?filter={rmse_cut}&sort=metrics.rmse&order=asc",
                None,
            ),
            metric_sort if metric_peer else None,
        ),
    )
    cases.insert(
        -1,
        (
            "min/max",
            f"experiment table's rows, {rmse_cut} and steps = 20",
            lambda: (
                "GET",
                f"/studio/experiments/1/ranges?filter={rmse_cut} and params.steps = '20'",
                None,
            ),
            None,
        ),
    )
    if not metric_peer:
        print(
            f"(above {METRIC_SORT_MAX_JOBS:,} jobs MLflow's own search sorts by a metric in seconds"
            " a page: the studio's metric sort is timed alone)"
        )
    times: dict[tuple[int, str], list[float]] = {}
    with httpx.Client(base_url=base, timeout=60, headers=auth_headers(base)) as http:

        def once(request: Request) -> float:
            method, path, body = request
            started = time.perf_counter()
            response = http.request(method, path, json=body)
            took = (time.perf_counter() - started) * 1000
            response.raise_for_status()
            return took

        for round_ in range(n + 5):  # the first rounds warm caches and connections
            for k, (_kind, _label, make, peer) in enumerate(cases):
                sides = [("studio", make)] + ([("mlflow", peer)] if peer else [])
                if round_ % 2:  # each side goes first in every other round
                    sides.reverse()
                for side, build in sides:
                    took = once(build())
                    if round_ >= 5:
                        times.setdefault((k, side), []).append(took)
    print(f"{len(ids):,} jobs, {n} interleaved rounds, times over loopback in ms")
    print(
        f"{'page':<10} {'case':<52} {'p50':>7} {'p95':>7}  {'MLflow p50':>10} {'p95':>7}  "
        f"{'p95 ratio':>9}  goal"
    )
    results: list[dict[str, Any]] = []
    checked: list[dict[str, Any]] = []
    for k, (kind, label, _make, peer) in enumerate(cases):
        mine = times[(k, "studio")]
        p50, p95 = median(mine), quantile(mine, 0.95)
        row: dict[str, Any] = {"page": kind, "case": label, "p50_ms": p50, "p95_ms": p95}
        theirs = ""
        if peer:
            other = times[(k, "mlflow")]
            q50, q95 = median(other), quantile(other, 0.95)
            row.update(mlflow_p50_ms=q50, mlflow_p95_ms=q95, p95_ratio=p95 / q95)
            theirs = f"{q50:10.1f} {q95:7.1f}  {p95 / q95:8.2f}x"
        else:
            theirs = f"{'':10} {'':7}  {'':9}"
        goal = GOALS_MS.get(kind)
        verdict = "" if goal is None else ("MET" if p95 < goal else "MISSED")
        results.append(row)
        if goal is not None:
            checked.append(
                {
                    "goal": f"{kind}, {label}: p95 < {goal:.0f} ms",
                    "value": f"p95 {p95:.1f} ms",
                    "met": p95 < goal,
                }
            )
        shown = f"p95 < {goal:.0f} ms {verdict}" if goal else ""
        print(f"{kind:<10} {label:<52} {p50:7.1f} {p95:7.1f}  {theirs}  {shown}")
    print("ratio: the studio's p95 over MLflow's UI search's p95 for the same rows (< 1 is faster)")
    return results, checked


if __name__ == "__main__":
    sys.exit(main())
