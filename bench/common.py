"""Pieces shared by the benchmark scripts in bench/: servers we start and stop, child process
environments, timing statistics, rich tables and the report's header, goals and JSON file.

The scripts run as files (``python bench/<name>.py``), so this folder is first on ``sys.path``
and they import it as ``common``.
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import logging
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from flowyard.credentials import find_token

# The owner tokens of the benches' workspaces (saved by each server at its first start, keyed by
# URL) and their --db-url secret key go to a private folder, never the user's own config.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="flowyard-bench-config-")
# Gone with the bench: it holds owner tokens, and one was left in /tmp by every run.
atexit.register(shutil.rmtree, os.environ["XDG_CONFIG_HOME"], True)

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

BIN = Path(sys.executable).parent
PYTHON = sys.executable
HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
FLOWYARD_HEALTH = "/api/flowyard/v1/health"
MLPROJECT = "name: {name}\n\nentry_points:\n  main:\n    command: python main.py\n"


def make_console(width: int = 120) -> Console:
    """A console at the terminal's width, or ``width`` columns when the output is not a tty."""
    return Console(width=None if sys.stdout.isatty() else width)


# -- processes we start ----------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_healthy(
    proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = START_TIMEOUT_S
) -> None:
    """Until ``url`` answers 200; raise with the log's tail if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
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


def stop_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the process group we started (its pgid is its pid), then SIGKILL if it lingers;
    a worker may outlive the leader, so the group gets a last SIGKILL either way."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=timeout)
            break
        except subprocess.TimeoutExpired:
            continue
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@contextmanager
def running(
    cmd: Sequence[str],
    health_url: str,
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` in a session of its own (output to ``log``), wait until ``health_url``
    answers, and stop its whole process group on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            list(cmd),
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(proc, health_url, log)
        yield proc
    finally:
        stop_group(proc)


def server_command(
    folder: Path, port: int, *, kind: str = "flowyard", workers: int | None = None
) -> tuple[list[str], str]:
    """The command line and health path of a `flowyard server` or stock `mlflow server` on a
    fresh SQLite file and artifact folder in ``folder``."""
    db_url = f"sqlite:///{folder / 'db.sqlite'}"
    artifacts = str(folder / "artifacts")
    if kind == "flowyard":
        cmd = [str(BIN / "flowyard"), "server", "--db-url", db_url, "--artifacts", artifacts]
        health = FLOWYARD_HEALTH
    else:
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", db_url]
        cmd += ["--artifacts-destination", artifacts]
        health = "/health"
    cmd += ["--host", HOST, "--port", str(port)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    return cmd, health


@contextmanager
def running_server(
    folder: Path, *, kind: str = "flowyard", workers: int | None = None
) -> Iterator[str]:
    """A server (see `server_command`) on a free port, its log in ``folder``; yields its URL.
    Every server runs with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd, health = server_command(folder, port, kind=kind, workers=workers)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    url = f"http://{HOST}:{port}"
    with running(cmd, url + health, folder / "server.log", cwd=folder, env=env):
        yield url


def auth_headers(url: str) -> dict[str, str]:
    """The Authorization header for a bench server's URL; none for a stock MLflow server."""
    token = find_token(url)
    return {"Authorization": f"Bearer {token}"} if token else {}


# -- child environments and projects ---------------------------------------------------------


def path_with_venv() -> str:
    """PATH with this interpreter's bin folder first: children's `python`, `uv`, `ray` are ours."""
    return os.pathsep.join([str(BIN), os.environ.get("PATH", "")])


def prepare_child_env(tmp: Path) -> None:
    """Set this process's environment (children inherit it) for fair timings: the venv first on
    PATH, no MLFLOW_TRACKING_URI, fewer MLflow INFO lines, and every interpreter caching bytecode
    under a temp PYTHONPYCACHEPREFIX (PYTHONDONTWRITEBYTECODE unset), as an installed package has
    .pyc files: a warm-up compiles, timed runs load."""
    os.environ["PATH"] = path_with_venv()
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    os.environ["MLFLOW_LOGGING_LEVEL"] = "WARNING"
    logging.getLogger("mlflow").setLevel(logging.WARNING)


def write_project(folder: Path, main_py: str, name: str = "trivial") -> Path:
    """An MLproject whose `main` entry point runs `python main.py`, with that main.py."""
    folder.mkdir(parents=True)
    (folder / "MLproject").write_text(MLPROJECT.format(name=name))
    (folder / "main.py").write_text(main_py)
    return folder


def wall_time(at: datetime) -> float:
    """A server timestamp (naive means UTC) as seconds since the epoch."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


# -- timing and statistics -------------------------------------------------------------------


def best_of(fn: Callable[[], object], n: int) -> float:
    """The fastest of ``n`` calls of ``fn``, in seconds."""
    best = math.inf
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def import_times(cases: dict[str, list[str]], repeats: int) -> dict[str, float]:
    """Fresh-interpreter wall times (best of ``repeats``) of `python <args>` per case, seconds."""
    return {
        label: best_of(functools.partial(_run_quietly, [PYTHON, *args]), repeats)
        for label, args in cases.items()
    }


def _run_quietly(cmd: list[str]) -> None:
    subprocess.run(cmd, capture_output=True, check=True)


def quantile(xs: Sequence[float], q: float) -> float:
    """The ``q`` quantile, interpolated linearly between order statistics (NaN if empty)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: Sequence[float]) -> float:
    """The median as a float (NaN if empty)."""
    return float(statistics.median(xs)) if xs else math.nan


def mean(xs: Sequence[float]) -> float:
    """The mean as a float (NaN if empty)."""
    return float(statistics.fmean(xs)) if xs else math.nan


def stats(xs: Sequence[float]) -> dict[str, float]:
    """n, median, p95, min, max and mean of ``xs`` (NaN for an empty list)."""
    return {
        "n": len(xs),
        "median": quantile(xs, 0.5),
        "p95": quantile(xs, 0.95),
        "min": min(xs) if xs else math.nan,
        "max": max(xs) if xs else math.nan,
        "mean": mean(xs),
    }


SUMMARIES: tuple[Callable[[Sequence[float]], float], ...] = (median, min, max, mean)
"""Median, min, max, mean: the columns of a comparison table."""


# -- reporting -------------------------------------------------------------------------------


def num(x: float, fmt: str = ".3f") -> str:
    """``x`` formatted, or "-" for NaN."""
    return "-" if math.isnan(x) else format(x, fmt)


def ratio_cell(a: float, b: float) -> str:
    """``a / b`` as "1.23x"."""
    return f"{a / b:.2f}x"


def diff_cell(a: float, b: float) -> str:
    """``a - b`` in seconds, signed: "+0.123"."""
    return f"{a - b:+.3f}"


def new_table(title: str, columns: Sequence[str], left: int = 1) -> Table:
    """A table titled on the left; its first ``left`` columns are left-justified, the rest
    right-justified."""
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right")
    return table


def comparison_table(
    title: str,
    first: str,
    rows: tuple[tuple[str, list[float]], tuple[str, list[float]]],
    ratio_label: str,
    added_label: str,
) -> Table:
    """Two sides' samples (n, median, min, max, mean), then the ratio and the difference of
    the first side to the second."""
    t = new_table(title, (first, "n", "median", "min", "max", "mean"))
    for label, xs in rows:
        t.add_row(label, str(len(xs)), *(f"{f(xs):.3f}" for f in SUMMARIES))
    t.add_section()
    (_, a), (_, b) = rows
    t.add_row(ratio_label, "", *(ratio_cell(f(a), f(b)) for f in SUMMARIES), style="cyan")
    t.add_row(added_label, "", *(diff_cell(f(a), f(b)) for f in SUMMARIES), style="cyan")
    return t


def header_line(quick: bool, detail: str = "", tools: str = "") -> str:
    """The report's first line: CPUs, Python, MLflow (and ``tools``), the kind of run."""
    import mlflow

    extra = f"  {tools}" if tools else ""
    what = f"{'quick' if quick else 'full'} run{f': {detail}' if detail else ''}"
    return (
        f"CPUs: {os.cpu_count()}  Python {platform.python_version()}  "
        f"MLflow {mlflow.__version__}{extra}  ({what})"
    )


def print_goals(console: Console, checked: list[dict[str, Any]], note: str = "") -> None:
    """The "Acceptance goals" section: each goal (with its "goal", "value" and "met": True,
    False or None when it could not be checked) marked MET, MISSED or SKIPPED."""
    console.print(f"[bold]Acceptance goals[/]{f' ({note})' if note else ''}:")
    marks = {True: "[green]MET[/]    ", False: "[red]MISSED[/] ", None: "[yellow]SKIPPED[/]"}
    for g in checked:
        console.print(f"  {marks[g['met']]}  {escape(str(g['goal']))}  ({escape(str(g['value']))})")


def bench_parser(doc: str | None, quick_help: str) -> argparse.ArgumentParser:
    """An argument parser with the usual --quick and --json options."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the results here")
    return parser


def write_json(
    path: Path, quick: bool, counts: DataclassInstance, console: Console | None, **results: Any
) -> None:
    """The results with the machine's description, as JSON at ``path``."""
    import mlflow

    payload = {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "mlflow": mlflow.__version__,
        "quick": quick,
        "counts": asdict(counts),
        **results,
    }
    path.write_text(json.dumps(payload, indent=2))
    if console is not None:
        console.print(f"Results written to {path}")
