"""Benchmark the Flowyard workspace server against stock `mlflow server`, through MlflowClient.

Each server runs alone (start, measure, stop) on 127.0.0.1, on its own fresh SQLite file.

    python bench/tracking.py            # full run
    python bench/tracking.py --quick    # smoke run with small counts
    python bench/tracking.py --json results.json
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from rich.markup import escape

from common import (
    auth_headers,
    bench_parser,
    header_line,
    make_console,
    new_table,
    print_goals,
    ratio_cell,
    running_server,
    stats,
    write_json,
)

WARMUP_CALLS = 20
OPS = ("create_run", "log_metric", "log_batch", "search_runs", "get_metric_history")
PAIRINGS = (
    ("flowyard-w1", "mlflow-default"),
    ("flowyard-w1", "mlflow-w1"),
    ("flowyard-w4", "mlflow-default"),
)
console = make_console(110)


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    kind: str  # "flowyard" or "mlflow"
    workers: int | None  # None: the server's default


SERVERS = (
    ServerSpec("flowyard-w1", "flowyard --workers 1", "flowyard", 1),
    ServerSpec("flowyard-w4", "flowyard --workers 4", "flowyard", 4),
    ServerSpec("mlflow-default", "mlflow server (default, 4 workers)", "mlflow", None),
    ServerSpec("mlflow-w1", "mlflow server --workers 1", "mlflow", 1),
)


@dataclass(frozen=True)
class Counts:
    create_run: int
    log_metric: int
    log_batch_calls: int
    search_runs_setup: int
    search_runs_calls: int
    history_points: int
    history_calls: int


FULL = Counts(50, 2000, 10, 1000, 5, 10_000, 5)
QUICK = Counts(20, 200, 3, 100, 3, 2000, 3)
BATCH_SIZE = 1000  # metrics per log_batch request (MLflow's per-request limit)


def timed(fn: Callable[[], object], n: int) -> list[float]:
    """Per-call latencies of n calls, in milliseconds."""
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def batch(key: str, start: int, size: int) -> list[Metric]:
    now = int(time.time() * 1000)
    return [Metric(key, float(i), now, i) for i in range(start, start + size)]


def measure(url: str, c: Counts) -> dict[str, list[float]]:
    # A Flowyard workspace checks a token on every call (MLflow sends MLFLOW_TRACKING_TOKEN as a
    # bearer header); a stock server has none to check.
    token = auth_headers(url).get("Authorization", "").removeprefix("Bearer ")
    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.create_experiment("bench")
    run_id = client.create_run(exp).info.run_id
    for i in range(WARMUP_CALLS):  # warm-up: connections, caches, lazy imports
        client.log_metric(run_id, "warmup", float(i), step=i)

    res: dict[str, list[float]] = {}
    res["create_run"] = timed(lambda: client.create_run(exp), c.create_run)

    step = iter(range(c.log_metric))
    res["log_metric"] = timed(
        lambda: client.log_metric(run_id, "m", 1.0, step=next(step)), c.log_metric
    )

    chunks = iter(range(c.log_batch_calls))
    res["log_batch"] = timed(
        lambda: client.log_batch(run_id, metrics=batch("b", next(chunks) * BATCH_SIZE, BATCH_SIZE)),
        c.log_batch_calls,
    )

    search_exp = client.create_experiment("bench-search")
    for _ in range(c.search_runs_setup):
        client.create_run(search_exp)
    found = client.search_runs([search_exp], max_results=1000)
    assert len(found) == min(c.search_runs_setup, 1000), len(found)
    res["search_runs"] = timed(
        lambda: client.search_runs([search_exp], max_results=1000), c.search_runs_calls
    )

    hist_run = client.create_run(exp).info.run_id
    for start in range(0, c.history_points, BATCH_SIZE):
        size = min(BATCH_SIZE, c.history_points - start)
        client.log_batch(hist_run, metrics=batch("h", start, size))
    assert len(client.get_metric_history(hist_run, "h")) == c.history_points
    res["get_metric_history"] = timed(
        lambda: client.get_metric_history(hist_run, "h"), c.history_calls
    )
    return res


Results = dict[str, dict[str, dict[str, float]]]  # server key -> op -> statistic -> ms


def render(results: Results, failed: dict[str, str], c: Counts) -> None:
    what = {
        "create_run": f"{c.create_run} calls",
        "log_metric": f"{c.log_metric} single-metric calls",
        "log_batch": f"{c.log_batch_calls} calls x {BATCH_SIZE} metrics",
        "search_runs": f"{c.search_runs_calls} calls over {c.search_runs_setup} runs",
        "get_metric_history": f"{c.history_calls} calls of {c.history_points} points",
    }
    cols = ("median", "p95", "mean")
    for op in OPS:
        table = new_table(f"{op} ({what[op]}), ms per call", ("server", "n", *cols))
        for s in SERVERS:
            if s.key in failed:
                table.add_row(s.label, "-", "failed", "", "", style="red")
                continue
            st = results[s.key][op]
            table.add_row(s.label, str(int(st["n"])), *(f"{st[k]:.2f}" for k in cols))
        table.add_section()
        for fy, stock in PAIRINGS:
            if fy in failed or stock in failed:
                table.add_row(f"ratio {fy} / {stock}", "", "n/a", "n/a", "n/a", style="cyan")
                continue
            a, b = results[fy][op], results[stock][op]
            table.add_row(
                f"ratio {fy} / {stock}", "", *(ratio_cell(a[k], b[k]) for k in cols), style="cyan"
            )
        console.print(table)


GOALS = (  # (text, operation, stock server, max ratio of medians flowyard / stock)
    ("log_metric median <= 1/5 of mlflow-default", "log_metric", "mlflow-default", 0.2),
    ("log_metric median <= mlflow-w1", "log_metric", "mlflow-w1", 1.0),
    ("log_batch median <= mlflow-default", "log_batch", "mlflow-default", 1.0),
    ("search_runs median <= mlflow-default", "search_runs", "mlflow-default", 1.0),
)


def goals(results: Results) -> list[dict[str, object]]:
    """Each goal for each flowyard server; ratio and met are None when a server failed."""
    out: list[dict[str, object]] = []
    for fy in ("flowyard-w1", "flowyard-w4"):
        for text, op, stock, limit in GOALS:
            ratio: float | None = None
            met: bool | None = None
            value = "server failed"
            if fy in results and stock in results:
                ratio = results[fy][op]["median"] / results[stock][op]["median"]
                met = ratio <= limit
                value = f"ratio {ratio:.3f}"
            goal = f"{fy}: {text}"
            out.append({"server": fy, "goal": goal, "ratio": ratio, "value": value, "met": met})
    return out


def run_all(counts: Counts) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Start, measure and stop each server in turn; a failing server is recorded, not fatal."""
    raw: dict[str, dict[str, list[float]]] = {}
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="fy-bench-") as tmp:
        for spec in SERVERS:
            folder = Path(tmp) / spec.key
            folder.mkdir()
            console.print(f"[bold]{spec.label}[/]: starting...")
            t0 = time.perf_counter()
            try:
                with running_server(folder, kind=spec.kind, workers=spec.workers) as url:
                    raw[spec.key] = measure(url, counts)
            except Exception as e:
                failed[spec.key] = f"{type(e).__name__}: {e}"
                console.print("  [red]FAILED[/]:", escape(failed[spec.key]))
                continue
            console.print(f"  done in {time.perf_counter() - t0:.1f} s")
    return raw, failed


def main() -> int:
    parser = bench_parser(__doc__, "small counts, for a smoke run")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL

    console.print(header_line(args.quick))
    console.print(
        "Note: every server (stock ones too) runs with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, "
        "so stock MLflow's background Huey job consumers don't load the machine and skew "
        "results. Servers run one at a time, each on its own fresh SQLite file."
    )
    raw, failed = run_all(counts)
    results = {k: {op: stats(v) for op, v in ops.items()} for k, ops in raw.items()}
    render(results, failed, counts)
    checked = goals(results)
    print_goals(console, checked, "medians, flowyard / stock")
    for key, err in failed.items():
        console.print(f"[red]{key} failed:[/]", escape(err.splitlines()[0]))

    if args.json:
        write_json(
            args.json,
            args.quick,
            counts,
            console,
            servers={s.key: s.label for s in SERVERS},
            failed=failed,
            stats_ms=results,
            samples_ms=raw,
            goals=checked,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
