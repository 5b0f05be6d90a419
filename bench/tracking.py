"""Benchmark the Flowyard workspace server against stock `mlflow server`, through MlflowClient.

Each server runs alone (start, measure, stop) on 127.0.0.1, on its own fresh SQLite file.

    python bench/tracking.py            # full run
    python bench/tracking.py --quick    # smoke run with small counts
    python bench/tracking.py --json results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from rich.console import Console
from rich.markup import escape
from rich.table import Table

BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
WARMUP_CALLS = 20
OPS = ("create_run", "log_metric", "log_batch", "search_runs", "get_metric_history")
PAIRINGS = (
    ("flowyard-w1", "mlflow-default"),
    ("flowyard-w1", "mlflow-w1"),
    ("flowyard-w4", "mlflow-default"),
)
console = Console(width=None if sys.stdout.isatty() else 110)


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def server_command(spec: ServerSpec, folder: Path, port: int) -> tuple[list[str], str]:
    """The command line and the health path of one server."""
    db_url = f"sqlite:///{folder / 'db.sqlite'}"
    artifacts = str(folder / "artifacts")
    if spec.kind == "flowyard":
        cmd = [str(BIN / "flowyard"), "server", "--db-url", db_url, "--artifacts", artifacts]
        cmd += ["--host", HOST, "--port", str(port), "--workers", str(spec.workers)]
        return cmd, "/api/flowyard/v1/health"
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", db_url]
    cmd += ["--artifacts-destination", artifacts, "--host", HOST, "--port", str(port)]
    if spec.workers is not None:
        cmd += ["--workers", str(spec.workers)]
    return cmd, "/health"


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    tail = log.read_text(errors="replace")[-3000:]
    last = next((line for line in reversed(tail.splitlines()) if line.strip()), "")
    raise RuntimeError(
        f"no answer at {url} (exit code {proc.poll()}): {last}\n--- server log tail ---\n{tail}"
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (its pgid is its pid), then SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
            break
        except subprocess.TimeoutExpired:
            continue
    with suppress(ProcessLookupError):  # a worker may outlive the parent: clean up the group
        os.killpg(proc.pid, signal.SIGKILL)


@contextmanager
def running_server(spec: ServerSpec, folder: Path) -> Iterator[str]:
    port = free_port()
    cmd, health = server_command(spec, folder, port)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://{HOST}:{port}"
        wait_healthy(proc, url + health, log)
        yield url
    finally:
        stop(proc)


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


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    median, mean = statistics.median(ordered), statistics.fmean(ordered)
    return {"n": len(ordered), "median": median, "p95": p95, "mean": mean}


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
        table = Table(title=f"{op} ({what[op]}), ms per call", title_justify="left")
        for col in ("server", "n", *cols):
            table.add_column(col, justify="left" if col == "server" else "right")
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
                f"ratio {fy} / {stock}", "", *(f"{a[k] / b[k]:.2f}x" for k in cols), style="cyan"
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
            if fy in results and stock in results:
                ratio = results[fy][op]["median"] / results[stock][op]["median"]
                met = ratio <= limit
            out.append({"server": fy, "goal": text, "ratio": ratio, "met": met})
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
                with running_server(spec, folder) as url:
                    raw[spec.key] = measure(url, counts)
            except Exception as e:
                failed[spec.key] = f"{type(e).__name__}: {e}"
                console.print("  [red]FAILED[/]:", escape(failed[spec.key]))
                continue
            console.print(f"  done in {time.perf_counter() - t0:.1f} s")
    return raw, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL

    console.print(
        f"CPUs: {os.cpu_count()}  Python {platform.python_version()}  MLflow {mlflow.__version__}"
        f"  ({'quick' if args.quick else 'full'} run)"
    )
    console.print(
        "Note: every server (stock ones too) runs with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false, "
        "so stock MLflow's background Huey job consumers don't load the machine and skew "
        "results. Servers run one at a time, each on its own fresh SQLite file."
    )
    raw, failed = run_all(counts)
    results = {k: {op: stats(v) for op, v in ops.items()} for k, ops in raw.items()}
    render(results, failed, counts)
    checked = goals(results)
    console.print("[bold]Acceptance goals[/] (medians, flowyard / stock):")
    for g in checked:
        if g["met"] is None:
            console.print(f"  [yellow]N/A[/]     {g['server']}: {g['goal']}  (server failed)")
            continue
        mark = "[green]MET[/]   " if g["met"] else "[red]MISSED[/]"
        console.print(f"  {mark}  {g['server']}: {g['goal']}  (ratio {g['ratio']:.3f})")
    for key, err in failed.items():
        console.print(f"[red]{key} failed:[/]", escape(err.splitlines()[0]))

    if args.json:
        payload = {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "mlflow": mlflow.__version__,
            "quick": args.quick,
            "counts": asdict(counts),
            "servers": {s.key: s.label for s in SERVERS},
            "failed": failed,
            "stats_ms": results,
            "samples_ms": raw,
            "goals": checked,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        console.print(f"Results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
