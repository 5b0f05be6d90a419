"""Benchmark Flowyard's dispatcher: a `process` compute's throughput; a `ray` compute vs raw Ray.

1. process: a fresh workspace server (SQLite, 127.0.0.1) with a `process` compute of 2 slots;
   N trivial jobs submitted back to back through `mlflow.projects.run(..., synchronous=False)`,
   then waited for. Reported: the submission rate, the completion throughput, each job's phases
   from its status events (queue wait, runner start-up, entry point, wrap-up) and the
   dispatcher's latency (a slot freeing → the next queued job dispatched).
2. ray: a Ray cluster on loopback, a workspace server and a `ray` compute, inside a network
   namespace that has only loopback (Ray listens on every interface otherwise): this script
   runs itself again with `--ray-only` under `unshare --net --fork` (root) or `unshare -rn
   --fork`. A trivial job submitted through Flowyard (synchronous `mlflow.projects.run`) against
   the same script submitted straight to Ray's JobSubmissionClient and polled to its end, with
   where Flowyard's time goes.

    python bench/dispatch.py                  # full run: 1,000 jobs, then Ray (5 runs each)
    python bench/dispatch.py --quick          # smoke run: 40 jobs, 2 Ray runs each
    python bench/dispatch.py --jobs 300       # another number of jobs
    python bench/dispatch.py --no-ray         # the process part only
    python bench/dispatch.py --json results.json
    unshare --net --fork bash -c 'ip link set lo up && RAY_USAGE_STATS_ENABLED=0 \\
        exec .venv/bin/python bench/dispatch.py --ray-only'   # the Ray part alone
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

import mlflow
import mlflow.projects
from rich.table import Table

from flowyard.client import Client
from flowyard.schemas import ComputeOut, JobOut, JobStatus

from common import (
    BIN,
    HOST,
    PYTHON,
    bench_parser,
    comparison_table,
    free_port,
    header_line,
    import_times,
    make_console,
    median,
    new_table,
    num,
    path_with_venv,
    prepare_child_env,
    print_goals,
    quantile,
    running_server,
    stats,
    stop_group,
    wall_time,
    write_json,
    write_project,
)

SCRIPT = Path(__file__).resolve()
RAY_START_TIMEOUT_S = 180.0
RAY_PART_TIMEOUT_S = 40 * 60.0
PROCESS_COMPUTE = "cpu2"
RAY_COMPUTE = "ray-cluster"
SLOTS = 2
WARMUP_RUNS = 1
RATIO_GOAL = 1.2
WAIT_POLL_S = 1.0
# How often the raw-Ray side asks for its job's status: Ray's API has no call that waits for the
# end, so a script polls (0.1 s: what FlowyardSubmittedRun.wait() did before it long-polled).
RAW_POLL_S = 0.1
PROGRESS_EVERY_S = 15.0
IMPORT_REPEATS = 3
# The dispatcher's periodic tick, as the server reads it (it also wakes when a job is queued).
DISPATCH_INTERVAL_S = float(os.environ.get("FLOWYARD_DISPATCH_INTERVAL_S", "0.5"))
FINAL = {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED}
console = make_console()


@dataclass(frozen=True)
class Counts:
    jobs: int  # trivial jobs submitted to the process compute, after one warm-up job
    ray_runs: int  # timed runs per side on Ray, after the warm-up


FULL = Counts(jobs=1000, ray_runs=5)
QUICK = Counts(jobs=40, ray_runs=2)

MAIN_PY = "# A trivial entry point: Python starts and exits.\n"


# -- processes we start ----------------------------------------------------------------------


def session_members(sid: int) -> list[int]:
    """Pids still alive in session ``sid`` (one that a process we started leads)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def create_compute(url: str, name: str, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "flowyard"), "compute", "create", name, *args],
        env={**os.environ, "FLOWYARD_WORKSPACE_URL": url},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"`flowyard compute create {name}` failed:\n{done.stderr}")


def prepare_env(tmp: Path) -> None:
    """The entry point's `python` (and Ray's) is this environment's; the warm-up compiles
    bytecode, the timed jobs load it; fresh blob, hash and job folders."""
    prepare_child_env(tmp)
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")


def submit_trivial(
    project: Path, exp_id: str, compute: str, *, synchronous: bool
) -> mlflow.projects.SubmittedRun:
    # A synchronous run ends with MLflow printing the run's URL: kept out of the report.
    with redirect_stdout(io.StringIO()):
        return mlflow.projects.run(
            str(project),
            entry_point="main",
            backend="flowyard",
            synchronous=synchronous,
            backend_config={"COMPUTE": compute, "USE_CONDA": False, "STREAM_OUTPUT": False},
            experiment_id=exp_id,
        )


def event_times(job: JobOut) -> dict[str, float]:
    """When the job first entered each status, from its events (server clock = ours)."""
    at: dict[str, float] = {}
    for e in job.events:
        at.setdefault(e.to_status.value, wall_time(e.at))
    return at


# -- part 1: a process compute's throughput --------------------------------------------------


def compute_load(client: Client, name: str) -> ComputeOut:
    return client.get_compute(name)


def wait_idle(client: Client, name: str, total: int, deadline_s: float) -> None:
    """Until the compute has nothing queued or active; progress every PROGRESS_EVERY_S."""
    started = time.monotonic()
    last_note = started
    while True:
        load = compute_load(client, name)
        if load.active_jobs == 0 and load.queued_jobs == 0:
            return
        now = time.monotonic()
        if now - started > deadline_s:
            raise RuntimeError(
                f"{name} still has {load.active_jobs} active and {load.queued_jobs} queued "
                f"job(s) after {deadline_s:.0f} s"
            )
        if now - last_note >= PROGRESS_EVERY_S:
            left = load.active_jobs + load.queued_jobs
            console.print(
                f"  waiting: {total - left:,}/{total:,} final, {load.active_jobs} active, "
                f"{load.queued_jobs:,} queued ({now - started:.0f} s)"
            )
            last_note = now
        time.sleep(WAIT_POLL_S)


def job_record(job: JobOut) -> dict[str, Any]:
    at = event_times(job)
    return {
        "id": job.id,
        "status": job.status.value,
        "queued": at.get("queued"),
        "preparing": at.get("preparing"),
        "running": at.get("running"),
        "finalizing": at.get("finalizing"),
        "ended": wall_time(job.ended_at) if job.ended_at else None,
    }


def measure_process(url: str, project: Path, exp_id: str, jobs: int) -> dict[str, Any]:
    create_compute(url, PROCESS_COMPUTE, "--type", "process", "--max-concurrent-jobs", str(SLOTS))
    client = Client(url)
    try:
        # Warm-up: compiles bytecode into the fresh cache and warms the server's code paths.
        t0 = time.perf_counter()
        warm = submit_trivial(project, exp_id, PROCESS_COMPUTE, synchronous=True)
        warm_s = time.perf_counter() - t0
        warm_job = client.get_job(warm.run_id)
        console.print(f"  warm-up job: {warm_job.status.value} in {warm_s:.2f} s")
        if warm_job.status != JobStatus.COMPLETED:
            raise RuntimeError(f"the warm-up job {warm_job.id} ended {warm_job.status.value}")

        ids: list[str] = []
        submit_s: list[float] = []
        every = max(1, jobs // 10)
        start_wall = time.time()
        start = time.perf_counter()
        for i in range(jobs):
            s0 = time.perf_counter()
            run = submit_trivial(project, exp_id, PROCESS_COMPUTE, synchronous=False)
            submit_s.append(time.perf_counter() - s0)
            ids.append(run.run_id)
            del run  # its HTTP client goes with it: no pile of idle connections
            if (i + 1) % every == 0 or i + 1 == jobs:
                took = time.perf_counter() - start
                console.print(f"  submitted {i + 1:,}/{jobs:,} ({(i + 1) / took:.1f} jobs/s)")
        submit_wall = time.perf_counter() - start
        wait_idle(client, PROCESS_COMPUTE, jobs, deadline_s=600.0 + 10.0 * jobs)
        seen_done = time.time()
        console.print(f"  all final {seen_done - start_wall:.1f} s after the first submit")
        records = [job_record(client.get_job(job_id)) for job_id in ids]
    finally:
        client.close()
    return {
        "jobs": jobs,
        "slots": SLOTS,
        "dispatch_interval_s": DISPATCH_INTERVAL_S,
        "warmup_s": warm_s,
        "submit_wall_s": submit_wall,
        "submit_s": submit_s,
        "submit_started_at": start_wall,
        "seen_all_final_at": seen_done,
        "records": records,
        "imports_s": runner_import_times(),
    }


def runner_import_times() -> dict[str, float]:
    """Fresh-interpreter wall times (best of a few): what every runner pays before its work."""
    cases = {
        "python -c pass": ["-c", "pass"],
        "python -m flowyard.runner --help (runner's imports)": ["-m", "flowyard.runner", "--help"],
    }
    return import_times(cases, IMPORT_REPEATS)


# Queue-depth buckets for the dispatcher's latency: (lowest depth, label).
DEPTHS = ((0, "0-9"), (10, "10-99"), (100, "100-299"), (300, "300-599"), (600, "600+"))
PHASES = (
    ("queue_wait", "queue wait (queued → preparing; grows with the backlog)"),
    ("runner_startup", "runner start-up (preparing → running: the entry point has started)"),
    ("entry_point", "entry point: bash + python main.py, the rest of it (running → finalizing)"),
    ("wrap_up", "wrap-up: outputs, final status, run ended (finalizing → completed)"),
    ("slot_time", "slot held (preparing → completed)"),
    ("end_to_end", "end to end (queued → completed)"),
)


def analyze_process(res: dict[str, Any]) -> dict[str, Any]:
    records: list[dict[str, Any]] = res["records"]
    done = [r for r in records if r["status"] == JobStatus.COMPLETED.value and r["running"]]
    spans = {
        "queue_wait": ("queued", "preparing"),
        "runner_startup": ("preparing", "running"),
        "entry_point": ("running", "finalizing"),
        "wrap_up": ("finalizing", "ended"),
        "slot_time": ("preparing", "ended"),
        "end_to_end": ("queued", "ended"),
    }
    phases = {k: [r[b] - r[a] for r in done] for k, (a, b) in spans.items()}
    final = [r for r in records if r["ended"] is not None]
    ends = sorted(r["ended"] for r in final)
    posts = sorted(r["queued"] for r in records)
    first_post, last_post = posts[0], posts[-1]
    first_end, last_end = ends[0], ends[-1]
    makespan = last_end - first_post
    during = [e for e in ends if e <= last_post]
    drain = [e for e in ends if e > last_post]
    dispatched = sorted(
        (r["preparing"], r["queued"]) for r in records if r["preparing"] is not None
    )
    first_prep = dispatched[0][0]
    queue_in = [r["queued"] for r in records]
    queue_out = [r["preparing"] if r["preparing"] is not None else math.inf for r in records]
    held = sum(r["ended"] - r["preparing"] for r in final if r["preparing"] is not None)
    # Dispatch k (0-based, in order) needs k - SLOTS + 1 ended jobs: the slot it took was freed,
    # at the latest, by the (k - SLOTS)-th end. Counted only when the job was already waiting.
    lat_during: list[float] = []
    lat_after: list[float] = []
    by_depth: dict[str, list[float]] = {label: [] for _, label in DEPTHS}
    for k in range(SLOTS, len(dispatched)):
        if k - SLOTS >= len(ends):
            break
        prep, queued = dispatched[k]
        freed = ends[k - SLOTS]
        if queued > freed:
            continue
        (lat_during if freed <= last_post else lat_after).append(prep - freed)
        # How many jobs waited in the queue when the slot freed: what a claim reads and writes.
        depth = sum(1 for q, p in zip(queue_in, queue_out, strict=True) if q <= freed < p)
        label = next(label for low, label in reversed(DEPTHS) if depth >= low)
        by_depth[label].append(prep - freed)
    submit_s: list[float] = res["submit_s"]
    tenth = max(1, len(submit_s) // 10)
    return {
        "n": len(records),
        "completed": len(done),
        "not_completed": {
            s: sum(1 for r in records if r["status"] == s)
            for s in sorted({r["status"] for r in records} - {JobStatus.COMPLETED.value})
        },
        "submit": {
            "wall_s": res["submit_wall_s"],
            "rate_per_s": len(records) / res["submit_wall_s"],
            **stats(submit_s),
            "first_tenth_median": quantile(submit_s[:tenth], 0.5),
            "last_tenth_median": quantile(submit_s[-tenth:], 0.5),
        },
        "phases": {k: stats(v) for k, v in phases.items()},
        "throughput": {
            "makespan_s": makespan,
            "overall_per_s": len(final) / makespan,
            "first_to_last_completion_per_s": (len(ends) - 1) / (last_end - first_end)
            if len(ends) > 1
            else math.nan,
            "while_submitting_per_s": len(during) / (last_post - first_post)
            if last_post > first_post
            else math.nan,
            "completed_while_submitting": len(during),
            "drain_per_s": len(drain) / (last_end - last_post) if drain else math.nan,
            "completed_in_drain": len(drain),
            "ceiling_per_s": SLOTS / median(phases["slot_time"]) if done else math.nan,
            "slot_utilisation": held / (SLOTS * (last_end - first_prep)),
        },
        "dispatch_latency": {
            "while_submitting": stats(lat_during),
            "after_last_submit": stats(lat_after),
            "all": stats(lat_during + lat_after),
            "by_queue_depth": {label: stats(xs) for label, xs in by_depth.items() if xs},
        },
    }


# -- part 2: Ray, inside a loopback-only network namespace -----------------------------------


def loopback_only() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]


@contextmanager
def running_ray(folder: Path) -> Iterator[str]:
    from ray.job_submission import JobSubmissionClient

    folder.mkdir(parents=True)
    port, dashboard = free_port(), free_port()
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": path_with_venv(),
    }
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--port", str(port)]
    cmd += ["--dashboard-port", str(dashboard), "--dashboard-host", HOST]
    cmd += ["--node-ip-address", HOST, "--num-cpus", str(SLOTS), "--disable-usage-stats"]
    # A temp folder of its own: nothing shared with another cluster's /tmp/ray.
    cmd += ["--include-dashboard", "true", "--temp-dir", str(folder / "t")]
    log = folder / "ray.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    address = f"http://{HOST}:{dashboard}"
    try:
        deadline = time.monotonic() + RAY_START_TIMEOUT_S
        while True:
            try:
                JobSubmissionClient(address).list_jobs()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"Ray did not start:\n{tail}") from None
                time.sleep(1)
        yield address
    finally:
        stop_group(proc, timeout=60)
        # Anything of this cluster still alive in the session `ray start` led, by pid.
        for pid in session_members(proc.pid):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


RAY_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
WATCH_S = 0.01
CLK_TCK = os.sysconf("SC_CLK_TCK")


class StartWatch:
    """When processes whose command line holds a marker started, seen from /proc by a thread.

    Each new pid is read once (then again while it is young, in case a shell is about to exec
    the command), so a scan costs a directory listing; start times are exact to a clock tick.
    """

    def __init__(self, markers: dict[str, bytes]) -> None:
        self.markers = markers
        self.found: dict[str, list[tuple[float, bytes]]] = {key: [] for key in markers}
        self._settled: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="start-watch", daemon=True)

    def __enter__(self) -> StartWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def since(self, key: str, t0: float, needle: bytes = b"") -> float:
        """The first start at or after ``t0`` of a ``key`` process whose command line holds
        ``needle`` (NaN if none was seen)."""
        later = [t for t, cmd in self.found[key] if t >= t0 - 0.02 and needle in cmd]
        return min(later) if later else math.nan

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_S):
            self._scan()

    def _scan(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) in self._settled:
                continue
            pid = int(entry.name)
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
                ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
                uptime = float(Path("/proc/uptime").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
            now = time.time()
            age = uptime - ticks / CLK_TCK
            hit = next((k for k, m in self.markers.items() if m in cmd), None)
            if hit is not None:
                self.found[hit].append((now - age, cmd))
                self._settled.add(pid)
            elif age > 1.0:
                self._settled.add(pid)


def run_raw(ray: Any, script: Path, watch: StartWatch) -> tuple[float, dict[str, float]]:
    """The trivial script as a plain Ray job, its status polled every RAW_POLL_S to its end."""
    t0_wall = time.time()
    t0 = time.perf_counter()
    sid = ray.submit_job(
        entrypoint=f"{shlex.quote(PYTHON)} {shlex.quote(str(script))}", entrypoint_num_cpus=1
    )
    while str(ray.get_job_status(sid).value) not in RAY_TERMINAL:
        time.sleep(RAW_POLL_S)
    took = time.perf_counter() - t0
    t_end = time.time()
    info = ray.get_job_info(sid)
    if str(info.status.value) != "SUCCEEDED":
        raise RuntimeError(f"raw Ray job {sid} ended {info.status}: {info.message}")
    start, end = info.start_time / 1000, info.end_time / 1000
    entry = watch.since("script", t0_wall)
    return took, {
        "submit": start - t0_wall,
        "ray_life": end - start,
        "ray_to_process": entry - start,
        "process_to_end": end - entry,
        "seen": t_end - end,
        "total": took,
    }


def run_flowyard_ray(
    ray: Any, client: Client, project: Path, exp_id: str, watch: StartWatch
) -> tuple[float, dict[str, float]]:
    t0_wall = time.time()
    t0 = time.perf_counter()
    run = submit_trivial(project, exp_id, RAY_COMPUTE, synchronous=True)
    took = time.perf_counter() - t0
    t_end = time.time()
    job = client.get_job(run.run_id)
    if job.status != JobStatus.COMPLETED:
        raise RuntimeError(f"Flowyard job {job.id} on Ray ended {job.status.value}")
    at = event_times(job)
    # The runner exits after it reports `completed`: wait (untimed) until Ray has seen it end,
    # so the next run starts on an idle cluster.
    deadline = time.monotonic() + 60
    while str(ray.get_job_status(job.external_id).value) not in RAY_TERMINAL:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray job {job.external_id} did not end after `completed`")
        time.sleep(RAW_POLL_S)
    info = ray.get_job_info(job.external_id)
    ray_start, ray_end = info.start_time / 1000, info.end_time / 1000
    runner = watch.since("runner", t0_wall, job.id.encode())
    return took, {
        "client": at["queued"] - t0_wall,
        "dispatch": at["preparing"] - at["queued"],
        "ray_submit": ray_start - at["preparing"],
        "ray_to_running": at["running"] - ray_start,
        "ray_to_process": runner - ray_start,
        "process_to_running": at["running"] - runner,
        "entry_point": at["finalizing"] - at["running"],
        "wrap_up": at["completed"] - at["finalizing"],
        "seen": t_end - at["completed"],
        "ray_life": ray_end - ray_start,
        "ray_exit_after_completed": ray_end - at["completed"],
        "total": took,
    }


def client_init_times(address: str, n: int = 5) -> list[float]:
    """What the dispatcher pays per Ray job for a new JobSubmissionClient (it makes one each)."""
    from ray.job_submission import JobSubmissionClient

    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        JobSubmissionClient(address)
        out.append(time.perf_counter() - t0)
    return out


def measure_ray(counts: Counts, tmp: Path) -> dict[str, Any]:
    import ray as ray_pkg

    prepare_env(tmp)
    project = write_project(tmp / "trivial", MAIN_PY)
    console.print(f"ray: starting a Ray {ray_pkg.__version__} cluster on loopback...")
    t0 = time.perf_counter()
    with running_ray(tmp / "ray") as address:
        cluster_s = time.perf_counter() - t0
        console.print(f"ray: cluster up at {address} in {cluster_s:.1f} s; starting Flowyard...")
        with running_server(tmp / "server") as url:
            create_compute(
                url, RAY_COMPUTE, "--type", "ray", "--address", address, "--python", PYTHON
            )
            os.environ["MLFLOW_TRACKING_URI"] = url
            mlflow.set_tracking_uri(url)
            exp_id = mlflow.set_experiment("bench-dispatch-ray").experiment_id
            markers = {"runner": b"flowyard.runner", "script": str(project / "main.py").encode()}
            with Client(url) as client, StartWatch(markers) as watch:
                result = compare_on_ray(counts, address, client, project, exp_id, watch)
    return {"ray_version": ray_pkg.__version__, "cluster_start_s": cluster_s, **result}


def compare_on_ray(
    counts: Counts, address: str, client: Client, project: Path, exp_id: str, watch: StartWatch
) -> dict[str, Any]:
    """Interleaved runs of both sides (the first of each a warm-up); the order alternates."""
    from ray.job_submission import JobSubmissionClient

    ray = JobSubmissionClient(address)
    times: dict[str, list[float]] = {"flowyard": [], "raw": []}
    breakdowns: dict[str, list[dict[str, float]]] = {"flowyard": [], "raw": []}
    warmups: dict[str, list[float]] = {"flowyard": [], "raw": []}
    for i in range(WARMUP_RUNS + counts.ray_runs):
        order = ("flowyard", "raw") if i % 2 == 0 else ("raw", "flowyard")
        for side in order:
            if side == "flowyard":
                took, parts = run_flowyard_ray(ray, client, project, exp_id, watch)
            else:
                took, parts = run_raw(ray, project / "main.py", watch)
            label = "warm-up" if i < WARMUP_RUNS else f"run {i - WARMUP_RUNS + 1}"
            console.print(f"ray:   {label} {side:8s} {took:6.3f} s")
            if i < WARMUP_RUNS:
                warmups[side].append(took)
                continue
            times[side].append(took)
            breakdowns[side].append(parts)
    return {
        "warmup_s": warmups,
        "times_s": times,
        "breakdown": breakdowns,
        "client_init_s": client_init_times(address),
    }


def _raise_exit(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so every `finally` stops what it started


def ray_only(counts: Counts) -> dict[str, Any]:
    if not loopback_only():
        names = [name for _, name in socket.if_nameindex()]
        raise SystemExit(
            f"Refusing to start Ray: this network namespace has {names}, not only 'lo'. Run "
            "inside `unshare --net --fork bash -c 'ip link set lo up && ...'` (what the main "
            "invocation does)."
        )
    signal.signal(signal.SIGTERM, _raise_exit)
    # A short path: Ray's socket paths under its temp folder must stay under 107 bytes.
    with tempfile.TemporaryDirectory(prefix="fyd-") as tmp:
        return measure_ray(counts, Path(tmp))


def run_ray_part(counts: Counts, quick: bool, tmp: Path) -> dict[str, Any]:
    """This script again, with --ray-only, in a network namespace of its own."""
    result = tmp / "ray.json"
    inner = [PYTHON, str(SCRIPT), "--ray-only", "--no-report", "--json", str(result)]
    inner += ["--ray-runs", str(counts.ray_runs), *(["--quick"] if quick else [])]
    script = "ip link set lo up && RAY_USAGE_STATS_ENABLED=0 exec " + " ".join(
        shlex.quote(a) for a in inner
    )
    netns = ["unshare", "--net", "--fork"] if os.geteuid() == 0 else ["unshare", "-rn", "--fork"]
    console.print(f"[bold]Part 2[/]: Ray, in a loopback-only network namespace ({' '.join(netns)})")
    # Its own session, so it outlives nothing of ours and we can stop all of it by its pgid.
    proc = subprocess.Popen([*netns, "bash", "-c", script], start_new_session=True)
    try:
        code = proc.wait(timeout=RAY_PART_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        if proc.poll() is None:
            stop_group(proc, timeout=120)  # its SIGTERM handler stops Ray and the server
    if code != 0 or not result.exists():
        why = "timed out" if code is None else f"exit code {code}"
        return {"skipped": f"the Ray part failed ({why}); see its output above"}
    payload: dict[str, Any] = json.loads(result.read_text())
    return dict(payload["ray"])


# -- reporting -------------------------------------------------------------------------------


def render_process(a: dict[str, Any], res: dict[str, Any]) -> None:
    sub, thr = a["submit"], a["throughput"]
    t = new_table(
        f"Process compute {PROCESS_COMPUTE} ({SLOTS} slots): {a['n']:,} trivial jobs "
        f"submitted back to back (after 1 warm-up job)",
        ("what", "value"),
    )
    t.add_row("submitted (mlflow.projects.run, synchronous=False)", f"{a['n']:,}")
    t.add_row("  submission wall time", f"{sub['wall_s']:.1f} s")
    t.add_row("  submission rate", f"{sub['rate_per_s']:.2f} jobs/s", style="cyan")
    t.add_row(
        "  one submit: median / p95 / max",
        f"{sub['median']:.3f} / {sub['p95']:.3f} / {sub['max']:.3f} s",
    )
    t.add_row(
        "  one submit, median of the first / last tenth",
        f"{sub['first_tenth_median']:.3f} / {sub['last_tenth_median']:.3f} s",
    )
    bad = ", ".join(f"{n} {s}" for s, n in a["not_completed"].items()) or "none"
    t.add_row("completed / not completed", f"{a['completed']:,} / {bad}")
    t.add_section()
    t.add_row("makespan: first POST → last job final", f"{thr['makespan_s']:.1f} s")
    t.add_row("completion throughput, overall", f"{thr['overall_per_s']:.2f} jobs/s", style="cyan")
    t.add_row(
        "  first → last completion", f"{num(thr['first_to_last_completion_per_s'], '.2f')} jobs/s"
    )
    t.add_row(
        f"  while submitting ({thr['completed_while_submitting']:,} jobs; the submitter "
        "competes for the CPUs)",
        f"{num(thr['while_submitting_per_s'], '.2f')} jobs/s",
    )
    t.add_row(
        f"  after the last submit (drain, {thr['completed_in_drain']:,} jobs)",
        f"{num(thr['drain_per_s'], '.2f')} jobs/s",
    )
    t.add_row(
        f"  ceiling: {SLOTS} slots / median slot time", f"{num(thr['ceiling_per_s'], '.2f')} jobs/s"
    )
    t.add_row("slot utilisation (slot-seconds held / available)", f"{thr['slot_utilisation']:.0%}")
    console.print(t)

    p = new_table(
        "Per-job phases of the completed jobs, from their status events, seconds",
        ("phase", "median", "p95", "max", "mean"),
    )
    for key, label in PHASES:
        s = a["phases"][key]
        if key == "slot_time":
            p.add_section()
        p.add_row(label, *(num(s[c]) for c in ("median", "p95", "max", "mean")))
    p.add_section()
    for label, secs in res["imports_s"].items():
        p.add_row(f"for reference: {label}, best of {IMPORT_REPEATS}", f"{secs:.3f}", "", "", "")
    console.print(p)

    d = new_table(
        "Dispatcher latency: a slot frees (a job's ended_at) → the next waiting job's "
        f"`preparing` event, seconds (the dispatcher ticks every {DISPATCH_INTERVAL_S:g} s and "
        "wakes when a job is queued)",
        ("when the slot freed", "n", "median", "p95", "max", "mean"),
    )
    names = {
        "while_submitting": "while submissions were arriving (each POST wakes it)",
        "after_last_submit": "after the last submission (only the tick)",
        "all": "all",
    }
    for key, label in names.items():
        s = a["dispatch_latency"][key]
        if key == "all":
            d.add_section()
        d.add_row(label, str(s["n"]), *(num(s[c]) for c in ("median", "p95", "max", "mean")))
    d.add_section()
    for label, s in a["dispatch_latency"]["by_queue_depth"].items():
        d.add_row(
            f"  with {label} jobs queued",
            str(s["n"]),
            *(num(s[c]) for c in ("median", "p95", "max", "mean")),
            style="dim",
        )
    console.print(d)


RAY_FY_PHASES = (
    ("client", "mlflow.projects.run → job queued (prepare, snapshot, POST /jobs + MLflow run)"),
    ("dispatch", "queued → preparing: the dispatcher wakes and claims"),
    ("ray_submit", "preparing → Ray job submitted: new JobSubmissionClient + submit_job"),
    ("ray_to_running", "Ray job submitted → running"),
    ("ray_to_process", "  Ray: supervisor actor, then the entrypoint process starts"),
    ("process_to_running", "  runner: interpreter, imports, start_job, snapshot, spawn → running"),
    ("entry_point", "running → finalizing: the rest of the entry point (bash + python main.py)"),
    ("wrap_up", "finalizing → completed: outputs, final status, MLflow run ended"),
    ("seen", "completed → run() returns: wait()'s long-polled log read + get_job"),
)
RAY_RAW_PHASES = (
    ("submit", "submit_job() → Ray's start_time"),
    ("ray_life", "Ray job start_time → end_time"),
    ("ray_to_process", "  Ray: supervisor actor, then the entrypoint process starts"),
    ("process_to_end", "  python main.py, its exit noticed (0.1 s poll) → end_time"),
    ("seen", "end_time → the 0.1 s poll sees it"),
)


def _phase_row(table: Table, side: str, label: str, xs: list[float], total: float) -> None:
    """One phase: sub-phases (labels that start with spaces) indented, dim, with how many runs
    the process watcher caught."""
    seen = [x for x in xs if not math.isnan(x)]
    sub = label.startswith("  ")
    name = f"    {label.strip()}" if sub else f"{side}: {label}"
    if sub and len(seen) < len(xs):
        name += f" ({len(seen)} of {len(xs)} seen)"
    if not seen:
        table.add_row(name, "-", "-", "-", "", style="dim" if sub else None)
        return
    med = median(seen)
    table.add_row(
        name,
        f"{med:.3f}",
        f"{min(seen):.3f}",
        f"{max(seen):.3f}",
        f"{med / total:.0%}",
        style="dim" if sub else None,
    )


def render_ray(r: dict[str, Any]) -> None:
    fy, raw = r["times_s"]["flowyard"], r["times_s"]["raw"]
    t = comparison_table(
        f"Trivial job on Ray {r['ray_version']}, submit → completion ({len(fy)} runs each "
        f"after {WARMUP_RUNS} warm-up, interleaved), seconds",
        "side",
        (
            ("flowyard (mlflow.projects.run, COMPUTE ray-cluster)", fy),
            ("raw Ray (JobSubmissionClient.submit_job + poll)", raw),
        ),
        "ratio flowyard / raw",
        "flowyard added time",
    )
    console.print(t)

    b = new_table(
        "Where the time goes on Ray (medians over the timed runs), seconds",
        ("phase", "median", "min", "max", "share"),
    )
    fyb, rawb = r["breakdown"]["flowyard"], r["breakdown"]["raw"]
    total = median([x["total"] for x in fyb])
    for key, label in RAY_FY_PHASES:
        _phase_row(b, "flowyard", label, [x[key] for x in fyb], total)
    b.add_row("flowyard: total", f"{total:.3f}", "", "", "", style="bold")
    b.add_section()
    raw_total = median([x["total"] for x in rawb])
    for key, label in RAY_RAW_PHASES:
        _phase_row(b, "raw", label, [x[key] for x in rawb], raw_total)
    b.add_row("raw: total", f"{raw_total:.3f}", "", "", "", style="bold")
    b.add_section()
    life = [x["ray_life"] for x in fyb]
    b.add_row(
        "flowyard's Ray job start_time → end_time (the runner's whole life in Ray)",
        f"{median(life):.3f}",
        f"{min(life):.3f}",
        f"{max(life):.3f}",
        "",
        style="dim",
    )
    ex = [x["ray_exit_after_completed"] for x in fyb]
    b.add_row(
        "  of which after `completed` (runner exit, Ray notices; off the critical path)",
        f"{median(ex):.3f}",
        f"{min(ex):.3f}",
        f"{max(ex):.3f}",
        "",
        style="dim",
    )
    init = r["client_init_s"]
    b.add_row(
        "JobSubmissionClient(address) construction (the dispatcher makes one per job)",
        f"{median(init):.3f}",
        f"{min(init):.3f}",
        f"{max(init):.3f}",
        "",
        style="dim",
    )
    warm = r["warmup_s"]
    b.add_row(
        f"warm-ups (excluded): flowyard {warm['flowyard'][0]:.1f} s, raw {warm['raw'][0]:.1f} s; "
        f"cluster start {r['cluster_start_s']:.1f} s",
        "",
        "",
        "",
        "",
        style="dim",
    )
    console.print(b)


def goals(process: dict[str, Any] | None, ray: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if process is not None:
        out.append(
            {
                "goal": f"all {process['n']:,} jobs on the process compute completed",
                "value": f"{process['completed']:,} completed",
                "met": process["completed"] == process["n"],
            }
        )
    if ray is not None:
        goal = f"Flowyard on Ray <= {RATIO_GOAL}x raw Ray (median submit → completion)"
        if "skipped" in ray:
            out.append({"goal": goal, "value": ray["skipped"], "met": None})
        else:
            ratio = median(ray["times_s"]["flowyard"]) / median(ray["times_s"]["raw"])
            out.append({"goal": goal, "value": f"{ratio:.2f}x", "met": ratio <= RATIO_GOAL})
    return out


# -- main ------------------------------------------------------------------------------------


def run_process_part(counts: Counts, tmp: Path) -> dict[str, Any]:
    prepare_env(tmp)
    project = write_project(tmp / "trivial", MAIN_PY)
    console.print("Starting the Flowyard server...")
    with running_server(tmp / "server") as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        mlflow.set_tracking_uri(url)
        exp_id = mlflow.set_experiment("bench-dispatch").experiment_id
        console.print(
            f"[bold]Part 1[/]: {counts.jobs:,} trivial jobs on a `process` compute, {url}"
        )
        return measure_process(url, project, exp_id, counts.jobs)


def main() -> int:
    parser = bench_parser(__doc__, "40 jobs, 2 Ray runs per side")
    parser.add_argument("--jobs", type=int, help="jobs for the process compute (default 1,000)")
    parser.add_argument("--ray-runs", type=int, help="timed Ray runs per side (default 5)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray part")
    parser.add_argument(
        "--ray-only",
        action="store_true",
        help="only the Ray part, here (must be a loopback-only network namespace)",
    )
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    if args.jobs:
        counts = replace(counts, jobs=args.jobs)
    if args.ray_runs:
        counts = replace(counts, ray_runs=args.ray_runs)
    if not args.no_report:
        detail = f"{counts.jobs:,} jobs, {counts.ray_runs} Ray runs per side"
        console.print(header_line(args.quick, detail))
        console.print(
            "Note: each part has its own Flowyard server (SQLite, 127.0.0.1, default dispatcher "
            "settings) and fresh XDG_CACHE_HOME; all interpreters cache bytecode under a temp "
            "PYTHONPYCACHEPREFIX and a warm-up comes first, so no timed job compiles. Submitter, "
            "server, runners and Ray share this machine's CPUs."
        )
    process: dict[str, Any] | None = None
    analysis: dict[str, Any] | None = None
    ray: dict[str, Any] | None = None
    if args.ray_only:
        ray = ray_only(counts)
    else:
        with tempfile.TemporaryDirectory(prefix="fy-bench-dispatch-") as tmp:
            process = run_process_part(counts, Path(tmp) / "process")
            analysis = analyze_process(process)
            if not args.no_ray:
                ray = run_ray_part(counts, args.quick, Path(tmp))
    checked = goals(analysis, ray)
    if not args.no_report:
        if process is not None and analysis is not None:
            render_process(analysis, process)
        if ray is not None and "skipped" not in ray:
            render_ray(ray)
        print_goals(console, checked)
    if args.json:
        write_json(
            args.json,
            args.quick,
            counts,
            None if args.no_report else console,
            process={"analysis": analysis, "raw": process} if process else None,
            ray=ray,
            goals=checked,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
