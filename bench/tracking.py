"""Benchmark the Flowyard workspace server against stock `mlflow server`, through MlflowClient.

All servers run at once on 127.0.0.1, each on its own fresh SQLite file. Their data is set up
first; then each round gives every server, in a rotating order, its slice of every operation, so
load from elsewhere on the machine falls on all of them alike.

    python bench/tracking.py            # full run
    python bench/tracking.py --quick    # smoke run with small counts
    python bench/tracking.py --json results.json
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from rich.markup import escape

from common import (
    auth_headers,
    bench_parser,
    header_line,
    make_console,
    median,
    new_table,
    num,
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
console = make_console(120)


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
    rounds: int
    create_run: int
    log_metric: int
    log_batch_calls: int
    search_runs_setup: int
    search_runs_calls: int
    history_points: int
    history_calls: int

    def calls(self, op: str) -> int:
        """The timed calls of ``op`` per server, over all rounds."""
        return {
            "create_run": self.create_run,
            "log_metric": self.log_metric,
            "log_batch": self.log_batch_calls,
            "search_runs": self.search_runs_calls,
            "get_metric_history": self.history_calls,
        }[op]

    def share(self, op: str, r: int) -> int:
        """Round ``r``'s slice of ``op``'s calls: an even split, the first rounds take the rest."""
        whole, rest = divmod(self.calls(op), self.rounds)
        return whole + (1 if r < rest else 0)


# At least one call of each operation per round: every round has a ratio of medians.
FULL = Counts(8, 50, 2000, 10, 1000, 8, 10_000, 8)
QUICK = Counts(3, 20, 200, 3, 100, 3, 2000, 3)
BATCH_SIZE = 1000  # metrics per log_batch request (MLflow's per-request limit)

Samples = dict[str, dict[str, list[list[float]]]]  # server key -> op -> round -> ms per call
Results = dict[str, dict[str, dict[str, float]]]  # server key -> op -> statistic -> ms


def use_token(token: str | None) -> None:
    """Send ``token`` from now on (none for a stock server). MLflow's client reads
    MLFLOW_TRACKING_TOKEN on every request and sends it as a bearer header."""
    if token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token
    else:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)


@dataclass(frozen=True)
class Target:
    """A running server with its data set up: what each round's operations use."""

    spec: ServerSpec
    token: str | None  # the owner token of a Flowyard workspace; None for stock MLflow
    client: mlflow.MlflowClient
    exp: str  # where create_run adds runs
    run_id: str  # where log_metric and log_batch write
    search_exp: str  # holds the runs search_runs finds
    hist_run: str  # holds the metric history get_metric_history reads
    steps: Iterator[int] = field(default_factory=itertools.count)
    chunks: Iterator[int] = field(default_factory=itertools.count)

    def operations(self) -> dict[str, Callable[[], object]]:
        c = self.client
        return {
            "create_run": lambda: c.create_run(self.exp),
            "log_metric": lambda: c.log_metric(self.run_id, "m", 1.0, step=next(self.steps)),
            "log_batch": lambda: c.log_batch(
                self.run_id, metrics=batch("b", next(self.chunks) * BATCH_SIZE, BATCH_SIZE)
            ),
            "search_runs": lambda: c.search_runs([self.search_exp], max_results=1000),
            "get_metric_history": lambda: c.get_metric_history(self.hist_run, "h"),
        }


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


def set_up(spec: ServerSpec, url: str, c: Counts) -> Target:
    """The experiments, runs and metric history the timed operations use, and a warm-up."""
    # A workspace's owner token, saved at its first start; a stock server takes none (and
    # find_token would fall back to the MLFLOW_TRACKING_TOKEN set for another server).
    token = None
    if spec.kind == "flowyard":
        token = auth_headers(url).get("Authorization", "").removeprefix("Bearer ") or None
    use_token(token)
    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.create_experiment("bench")
    run_id = client.create_run(exp).info.run_id
    for i in range(WARMUP_CALLS):  # connections, caches, lazy imports
        client.log_metric(run_id, "warmup", float(i), step=i)

    search_exp = client.create_experiment("bench-search")
    for _ in range(c.search_runs_setup):
        client.create_run(search_exp)
    found = client.search_runs([search_exp], max_results=1000)
    assert len(found) == min(c.search_runs_setup, 1000), len(found)

    hist_run = client.create_run(exp).info.run_id
    for start in range(0, c.history_points, BATCH_SIZE):
        size = min(BATCH_SIZE, c.history_points - start)
        client.log_batch(hist_run, metrics=batch("h", start, size))
    assert len(client.get_metric_history(hist_run, "h")) == c.history_points
    return Target(spec, token, client, exp, run_id, search_exp, hist_run)


def measure(targets: list[Target], c: Counts, failed: dict[str, str]) -> Samples:
    """Interleaved rounds: each server, in an order rotating by one per round, runs its slice of
    every operation. A server that fails is recorded in ``failed`` and left out from then on."""
    samples: Samples = {t.spec.key: {op: [] for op in OPS} for t in targets}
    for r in range(c.rounds):
        shift = r % len(targets)
        took: list[str] = []
        for t in targets[shift:] + targets[:shift]:
            if t.spec.key in failed:
                continue
            use_token(t.token)
            t0 = time.perf_counter()
            try:
                # Untimed: the connection may have idled out while the other servers ran.
                t.client.get_experiment(t.exp)
                ops = t.operations()
                for op in OPS:
                    samples[t.spec.key][op].append(timed(ops[op], c.share(op, r)))
            except Exception as e:
                failed[t.spec.key] = f"{type(e).__name__}: {e}"
                console.print(f"  [red]{t.spec.key} FAILED[/]:", escape(failed[t.spec.key]))
                continue
            took.append(f"{t.spec.key} {time.perf_counter() - t0:.1f} s")
        console.print(f"  round {r + 1}/{c.rounds}: " + ", ".join(took))
    return {k: v for k, v in samples.items() if k not in failed}


def per_round(a: list[list[float]], b: list[list[float]]) -> list[float]:
    """The ratio of the medians of ``a`` and ``b`` in each round (both sides' calls of one op)."""
    return [median(x) / median(y) for x, y in zip(a, b, strict=True) if x and y]


def round_ratios(samples: Samples) -> dict[str, dict[str, list[float]]]:
    """Per pairing ("fy/stock") and op, the ratio of the two servers' medians in each round."""
    return {
        f"{fy}/{stock}": {op: per_round(samples[fy][op], samples[stock][op]) for op in OPS}
        for fy, stock in PAIRINGS
        if fy in samples and stock in samples
    }


def spread(xs: list[float]) -> str:
    """Per-round ratios as "median [min-max]"."""
    if not xs:
        return "-"
    return f"{median(xs):.2f}x [{min(xs):.2f}-{max(xs):.2f}]"


def render(
    results: Results, ratios: dict[str, dict[str, list[float]]], failed: dict[str, str], c: Counts
) -> None:
    what = {
        "create_run": f"{c.create_run} calls",
        "log_metric": f"{c.log_metric} single-metric calls",
        "log_batch": f"{c.log_batch_calls} calls x {BATCH_SIZE} metrics",
        "search_runs": f"{c.search_runs_calls} calls over {c.search_runs_setup} runs",
        "get_metric_history": f"{c.history_calls} calls of {c.history_points} points",
    }
    cols = ("median", "p95", "mean")
    for op in OPS:
        table = new_table(
            f"{op} ({what[op]} in {c.rounds} rounds), ms per call",
            ("server", "n", *cols, escape("per round: median [min-max]")),
        )
        for s in SERVERS:
            if s.key in failed:
                table.add_row(s.label, "-", "failed", "", "", "", style="red")
                continue
            st = results[s.key][op]
            table.add_row(s.label, str(int(st["n"])), *(num(st[k], ".2f") for k in cols), "")
        table.add_section()
        for fy, stock in PAIRINGS:
            label = f"ratio {fy} / {stock}"
            pair = f"{fy}/{stock}"
            if pair not in ratios:
                table.add_row(label, "", "n/a", "", "", "n/a", style="cyan")
                continue
            overall = ratio_cell(results[fy][op]["median"], results[stock][op]["median"])
            table.add_row(label, "", overall, "", "", spread(ratios[pair][op]), style="cyan")
        console.print(table)


GOALS = (  # (text, operation, stock server, max ratio of medians flowyard / stock)
    ("log_metric median <= 1/5 of mlflow-default", "log_metric", "mlflow-default", 0.2),
    ("log_metric median <= mlflow-w1", "log_metric", "mlflow-w1", 1.0),
    ("log_batch median <= mlflow-default", "log_batch", "mlflow-default", 1.0),
    ("search_runs median <= mlflow-default", "search_runs", "mlflow-default", 1.0),
)


def goals(results: Results, samples: Samples) -> list[dict[str, object]]:
    """Each goal for each flowyard server, on the medians over all rounds (the per-round spread
    shown beside); ratio and met are None when a server failed."""
    out: list[dict[str, object]] = []
    for fy in ("flowyard-w1", "flowyard-w4"):
        for text, op, stock, limit in GOALS:
            ratio: float | None = None
            met: bool | None = None
            value = "server failed"
            if fy in results and stock in results:
                ratio = results[fy][op]["median"] / results[stock][op]["median"]
                met = ratio <= limit
                rounds = spread(per_round(samples[fy][op], samples[stock][op]))
                value = f"ratio {ratio:.3f}; per round {rounds}"
            goal = f"{fy}: {text}"
            out.append({"server": fy, "goal": goal, "ratio": ratio, "value": value, "met": met})
    return out


def run_all(counts: Counts) -> tuple[Samples, dict[str, str]]:
    """Start every server (one after another, each waits until healthy), set up each one's data,
    then measure them in interleaved rounds; a failing server is recorded, not fatal."""
    failed: dict[str, str] = {}
    targets: list[Target] = []
    with tempfile.TemporaryDirectory(prefix="fy-bench-") as tmp, ExitStack() as stack:
        for spec in SERVERS:
            console.print(f"[bold]{spec.label}[/]: starting and setting up...")
            t0 = time.perf_counter()
            try:
                # A server whose set-up fails is stopped at once; the others run until the end.
                with ExitStack() as this:
                    url = this.enter_context(
                        running_server(Path(tmp) / spec.key, kind=spec.kind, workers=spec.workers)
                    )
                    targets.append(set_up(spec, url, counts))
                    stack.enter_context(this.pop_all())
            except Exception as e:
                failed[spec.key] = f"{type(e).__name__}: {e}"
                console.print("  [red]FAILED[/]:", escape(failed[spec.key]))
                continue
            console.print(f"  ready in {time.perf_counter() - t0:.1f} s")
        console.print(f"[bold]Measuring[/] in {counts.rounds} interleaved rounds...")
        samples = measure(targets, counts, failed) if targets else {}
    return samples, failed


def main() -> int:
    parser = bench_parser(__doc__, "small counts, for a smoke run")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    # Each server's token is set before its slice; none from the shell may stand in for it, nor
    # a tracking URI steer the Flowyard header plugin to one.
    for name in ("MLFLOW_TRACKING_TOKEN", "FLOWYARD_TOKEN", "MLFLOW_TRACKING_URI"):
        os.environ.pop(name, None)

    console.print(header_line(args.quick))
    console.print(
        "Note: every server (stock ones too) runs with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, "
        "so stock MLflow's background Huey job consumers don't load the machine and skew "
        "results. All servers run at once, each on its own fresh SQLite file, and are measured "
        f"in {counts.rounds} interleaved rounds (the order rotates each round)."
    )
    samples, failed = run_all(counts)
    results = {
        k: {op: stats(list(itertools.chain.from_iterable(rounds))) for op, rounds in ops.items()}
        for k, ops in samples.items()
    }
    ratios = round_ratios(samples)
    render(results, ratios, failed, counts)
    checked = goals(results, samples)
    print_goals(console, checked, "medians over all rounds, flowyard / stock")
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
            round_ratios=ratios,
            samples_ms=samples,
            goals=checked,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
