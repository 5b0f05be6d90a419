"""Benchmark building a project's environment: Flowyard's uv builder against MLflow's managers.

One Flowyard workspace server runs on 127.0.0.1 on a fresh SQLite file and tracks every run. The
project is examples/sklearn_elasticnet (python_env.yaml: Python 3.11, scikit-learn==1.9.1,
mlflow-skinny), copied to a temp folder and run with `steps=1`. Measured, in rounds:

1. Flowyard (`backend="flowyard"`, USE_CONDA true): a cold build (fresh XDG_CACHE_HOME, so no
   environment cached) and a warm start (the same call again): the wall time of
   `mlflow.projects.run`, and the runner's own environment step from the job's log;
2. MLflow's local backend with `env_manager="uv"` and `"virtualenv"`: cold (fresh MLFLOW_ENV_ROOT)
   and warm (the same call again): the wall time, and the time spent in MLflow's
   `_create_virtualenv`;
3. Flowyard warm starts against USE_CONDA false runs of the same project (interleaved), what a
   warm start is made of, and both again under this machine's default PYTHONDONTWRITEBYTECODE=1.
4. Containers: a docker_env project (a trivial entry point that logs a metric) whose job image
   is cached, against the same project run as a plain process job (no docker_env, USE_CONDA
   false), interleaved: what a warm container start adds. The base image is the tests' (a
   Debian root made with debootstrap, MLflow in it: tests/images.py), built first if missing.
   MLflow's own docker backend is not run: it needs a Docker daemon, which this machine lacks.

uv's download cache (UV_CACHE_DIR, in the temp folder) is shared by every build and warmed by an
untimed build first, so "cold" means a new environment, not new downloads.

    python bench/env.py            # full run
    python bench/env.py --quick    # smoke run: one round, one pair
    python bench/env.py --json results.json
    python bench/env.py --containers-only   # part 4 alone
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import mlflow.projects
from rich.markup import escape

from flowyard.client import Client
from flowyard.env import builder
from flowyard.env.spec import from_python_env
from flowyard.schemas import JobOut, JobStatus

from common import (
    SUMMARIES,
    bench_parser,
    best_of,
    diff_cell,
    header_line,
    make_console,
    median,
    new_table,
    prepare_child_env,
    print_goals,
    ratio_cell,
    running_server,
    wall_time,
    write_json,
)

WARM_GOAL_S = 0.1
PART_REPEATS = 5
EXAMPLE_SRC = Path(__file__).resolve().parent.parent / "examples" / "sklearn_elasticnet"
PARAMS = {"steps": 1}
CONTENDERS = ("flowyard", "mlflow_uv", "mlflow_virtualenv")
LABELS = {
    "flowyard": "flowyard (USE_CONDA true)",
    "mlflow_uv": "mlflow local, env_manager uv",
    "mlflow_virtualenv": "mlflow local, env_manager virtualenv",
}
MANAGERS = {"mlflow_uv": "uv", "mlflow_virtualenv": "virtualenv"}
# python-build's downloads (MLflow's virtualenv manager runs `pyenv install`) give up in time.
CURL_OPTS = "--connect-timeout 15 --max-time 300"
ENV_LINE = re.compile(r"\[flowyard\] environment: (built|reusing cached) (\S+) \(([\d.]+) s\)")
UV_TIMING = re.compile(r"\b(Resolved|Prepared|Installed) (\d+) packages? in ([\d.]+)(ms|s)\b")
ERROR_HINT = re.compile(r"error|fail|could not|cannot|not found|timed out|refused|resolve", re.I)
console = make_console()


@dataclass(frozen=True)
class Counts:
    rounds: int  # per contender: one cold build, then one warm start
    pairs: int  # interleaved (Flowyard warm start, USE_CONDA false) pairs
    default_bytecode_pairs: int  # the same, under PYTHONDONTWRITEBYTECODE=1
    virtualenv_timeout_s: float  # MLflow's virtualenv manager may try to build a CPython

    container_pairs: int  # interleaved (docker_env on a cached image, plain process job) pairs


FULL = Counts(
    rounds=5, pairs=5, default_bytecode_pairs=2, virtualenv_timeout_s=1800, container_pairs=5
)
QUICK = Counts(
    rounds=1, pairs=1, default_bytecode_pairs=1, virtualenv_timeout_s=600, container_pairs=1
)
CONTAINER_MAIN = "import mlflow\nmlflow.log_metric('x', 1.0)\n"
IMAGE_LINE = re.compile(r"environment: (built|reusing cached) image (\S+) \(([\d.]+) s\)")


@dataclass
class Sample:
    """One `mlflow.projects.run` of the example project."""

    wall: float
    step: float | None = None  # the environment step (Flowyard's log line; MLflow's call)
    verb: str = ""  # Flowyard: "built" or "reusing cached"
    to_running: float | None = None  # Flowyard: job submitted → running (its events)
    entry_point: float | None = None  # Flowyard: running → finalizing
    python: str = ""  # the environment's base interpreter (its pyvenv.cfg)
    uv: dict[str, float] = field(default_factory=dict)  # uv's own timings, from its output


# -- process plumbing ------------------------------------------------------------------------


@contextmanager
def env_vars(**values: str | None) -> Iterator[None]:
    """Set (or, for None, remove) environment variables meanwhile; children inherit them."""
    saved = {k: os.environ.get(k) for k in values}

    def apply(pairs: dict[str, str | None]) -> None:
        for k, v in pairs.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    apply(values)
    try:
        yield
    finally:
        apply(saved)


@contextmanager
def captured(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, and so its children's, to ``path`` meanwhile: uv,
    pip and the entry point print there, not between the results."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text[text.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@contextmanager
def deadline(seconds: float) -> Iterator[threading.Event]:
    """Past ``seconds``, SIGTERM (by pid) what MLflow started in this process group: pyenv, pip,
    curl, a compiler. The server and Flowyard's runners have sessions of their own."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        group = os.getpgid(0)
        for pid in _descendants(os.getpid()):
            with suppress(ProcessLookupError):
                if os.getpgid(pid) == group:
                    os.kill(pid, signal.SIGTERM)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield fired
    finally:
        timer.cancel()


def one_line_reason(error: BaseException, log: Path) -> str:
    first = (str(error).strip().splitlines() or [""])[0]
    reason = f"{type(error).__name__}: {first}".strip()
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    hint = next((ln for ln in reversed(lines) if ERROR_HINT.search(ln)), "")
    if hint and hint not in reason:
        reason += f" | {hint}"
    return reason[:300]


# -- runs ------------------------------------------------------------------------------------


def copy_example(dest: Path) -> Path:
    shutil.copytree(EXAMPLE_SRC, dest, ignore=shutil.ignore_patterns("outputs", "__pycache__"))
    return dest


def clean_outputs(project: Path) -> None:
    """MLflow's local backend runs in the project folder itself: the same files every run."""
    shutil.rmtree(project / "outputs", ignore_errors=True)


def check_run(run_id: str) -> None:
    run = mlflow.MlflowClient().get_run(run_id)
    if run.info.status != "FINISHED" or "rmse" not in run.data.metrics:
        raise RuntimeError(f"run {run_id} is {run.info.status}, metrics {run.data.metrics}")


def base_python(env_dir: Path) -> str:
    """The environment's base interpreter, as "3.11.7 at /its/home", from its pyvenv.cfg."""
    try:
        text = (env_dir / "pyvenv.cfg").read_text()
    except OSError:
        return "?"
    cfg = {
        k.strip(): v.strip() for k, sep, v in (ln.partition("=") for ln in text.splitlines()) if sep
    }
    return f"{cfg.get('version_info') or cfg.get('version', '?')} at {cfg.get('home', '?')}"


def uv_timings(text: str) -> dict[str, float]:
    """uv's "Resolved/Prepared/Installed N packages in T" lines, summed over its invocations."""
    out: dict[str, float] = {}
    for verb, count, value, unit in UV_TIMING.findall(text):
        key = verb.lower()
        out[f"{key}_s"] = out.get(f"{key}_s", 0.0) + float(value) / (1000 if unit == "ms" else 1)
        out[f"{key}_packages"] = out.get(f"{key}_packages", 0.0) + int(count)
    return out


def job_log(client: Client, job_id: str) -> str:
    data = b""
    while True:
        chunk, _, size = client.read_log(job_id, len(data))
        data += chunk
        if not chunk or len(data) >= size:
            return data.decode(errors="replace")


def job_phases(job: JobOut) -> dict[str, float]:
    at: dict[JobStatus, float] = {}
    for e in job.events:
        at.setdefault(e.to_status, wall_time(e.at))
    return {
        "to_running": at[JobStatus.RUNNING] - wall_time(job.submitted_at),
        "entry_point": at[JobStatus.FINALIZING] - at[JobStatus.RUNNING],
    }


def flowyard_run(url: str, project: Path, exp_id: str, *, use_conda: bool, log: Path) -> Sample:
    clean_outputs(project)
    try:
        with captured(log):
            t0 = time.perf_counter()
            submitted = mlflow.projects.run(
                str(project),
                entry_point="main",
                parameters=PARAMS,
                backend="flowyard",
                backend_config={"USE_CONDA": use_conda, "STREAM_OUTPUT": False},
                experiment_id=exp_id,
            )
            wall = time.perf_counter() - t0
    except Exception as e:
        with Client(url) as client:
            jobs = client.list_jobs()
            newest = max(jobs, key=lambda j: j.submitted_at) if jobs else None
            tail = job_log(client, newest.id)[-3000:] if newest else "(no job)"
        raise RuntimeError(f"the Flowyard run failed: {e}\n--- its job log ---\n{tail}") from e
    check_run(submitted.run_id)
    with Client(url) as client:
        text = job_log(client, submitted.run_id)
        phases = job_phases(client.get_job(submitted.run_id))
    sample = Sample(wall=wall, to_running=phases["to_running"], entry_point=phases["entry_point"])
    if use_conda:
        found = ENV_LINE.search(text)
        if not found:
            raise RuntimeError(f"no `environment: built|reusing` line in the log:\n{text[-3000:]}")
        sample.verb, sample.step = found[1], float(found[3])
        sample.python = base_python(Path(found[2]))
        sample.uv = uv_timings(text)
    return sample


@contextmanager
def mlflow_probe() -> Iterator[dict[str, float]]:
    """Time MLflow's local backend's environment step (`_create_virtualenv`: create or reuse),
    and note when it starts the entry point (`_run_entry_point`)."""
    import mlflow.projects.backend.local as local_backend

    marks: dict[str, float] = {"step": 0.0}
    create, start = local_backend._create_virtualenv, local_backend._run_entry_point

    @functools.wraps(create)
    def create_timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return create(*args, **kwargs)
        finally:
            marks["step"] += time.perf_counter() - t0

    @functools.wraps(start)
    def start_marked(*args: Any, **kwargs: Any) -> Any:
        marks["entry_point_start"] = time.perf_counter()
        return start(*args, **kwargs)

    local_backend._create_virtualenv = create_timed
    local_backend._run_entry_point = start_marked
    try:
        yield marks
    finally:
        local_backend._create_virtualenv = create
        local_backend._run_entry_point = start


def mlflow_run(project: Path, exp_id: str, manager: str, env_root: Path, log: Path) -> Sample:
    clean_outputs(project)
    start = log.stat().st_size if log.exists() else 0
    with mlflow_probe() as marks, captured(log):
        t0 = time.perf_counter()
        submitted = mlflow.projects.run(
            str(project),
            entry_point="main",
            parameters=PARAMS,
            backend="local",
            env_manager=manager,
            experiment_id=exp_id,
        )
        t1 = time.perf_counter()
    check_run(submitted.run_id)
    envs = [p for p in env_root.iterdir() if p.is_dir()] if env_root.is_dir() else []
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return Sample(
        wall=t1 - t0,
        step=marks["step"],
        to_running=marks["entry_point_start"] - t0,
        entry_point=t1 - marks["entry_point_start"],
        python=base_python(envs[0]) if len(envs) == 1 else f"{len(envs)} environments",
        uv=uv_timings(text) if manager == "uv" else {},
    )


# -- the measurements ------------------------------------------------------------------------


def warm_up(url: str, project: Path, exp_id: str, tmp: Path) -> Sample:
    """Untimed: fills uv's download cache, and brings every code path and interpreter's bytecode
    (server, runner, the compute's Python running train.py) to its steady state."""
    logs = tmp / "logs"
    with env_vars(XDG_CACHE_HOME=str(tmp / "cache-warmup")):
        built = flowyard_run(url, project, exp_id, use_conda=True, log=logs / "warmup-fy.log")
        flowyard_run(url, project, exp_id, use_conda=False, log=logs / "warmup-fy-local.log")
    clean_outputs(project)
    with captured(logs / "warmup-mlflow-local.log"):
        done = mlflow.projects.run(
            str(project),
            entry_point="main",
            parameters=PARAMS,
            backend="local",
            env_manager="local",
            experiment_id=exp_id,
        )
    check_run(done.run_id)
    return built


def run_contender(
    name: str, url: str, project: Path, exp_id: str, root: Path, log: Path, counts: Counts
) -> Sample:
    if name == "flowyard":
        with env_vars(XDG_CACHE_HOME=str(root)):
            return flowyard_run(url, project, exp_id, use_conda=True, log=log)
    manager = MANAGERS[name]
    with env_vars(MLFLOW_ENV_ROOT=str(root)):
        if manager != "virtualenv":
            return mlflow_run(project, exp_id, manager, root, log)
        # pyenv's python-build leaves its log in $TMPDIR: in the temp folder, it goes with it.
        scratch = root.parent / f"{root.name}-tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        with env_vars(TMPDIR=str(scratch)), deadline(counts.virtualenv_timeout_s) as fired:
            try:
                return mlflow_run(project, exp_id, manager, root, log)
            except Exception as e:
                if fired.is_set():
                    raise TimeoutError(
                        f"stopped after {counts.virtualenv_timeout_s:.0f} s: {e}"
                    ) from e
                raise


def measure_rounds(
    url: str, project: Path, exp_id: str, tmp: Path, counts: Counts
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, str], Path]:
    """Per round and contender, a cold build in a fresh cache, then a warm start in it; the
    order of the contenders alternates from round to round."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {"cold": [], "warm": []} for name in CONTENDERS
    }
    failed: dict[str, str] = {}
    last_flowyard_cache = tmp / "envs" / "none"
    for r in range(counts.rounds):
        order = CONTENDERS if r % 2 == 0 else tuple(reversed(CONTENDERS))
        for name in order:
            if name in failed:
                continue
            root = tmp / "envs" / f"{name}-r{r + 1}"
            for case in ("cold", "warm"):
                log = tmp / "logs" / f"{name}-r{r + 1}-{case}.log"
                try:
                    sample = run_contender(name, url, project, exp_id, root, log, counts)
                except Exception as e:
                    if name == "flowyard":
                        raise
                    failed[name] = one_line_reason(e, log) if log.exists() else repr(e)[:300]
                    console.print(
                        f"  round {r + 1}  {LABELS[name]:38s} {case}: "
                        f"[red]failed[/]: {escape(failed[name])}"
                    )
                    break
                if name == "flowyard":
                    want = "built" if case == "cold" else "reusing cached"
                    if sample.verb != want:
                        raise RuntimeError(f"a {case} Flowyard run said {sample.verb!r}")
                    last_flowyard_cache = root
                runs[name][case].append(asdict(sample))
                step = "" if sample.step is None else f"  env step {sample.step:7.3f} s"
                console.print(
                    f"  round {r + 1}  {LABELS[name]:38s} {case}: wall {sample.wall:7.3f} s{step}"
                )
    return runs, failed, last_flowyard_cache


def measure_pairs(
    url: str, project: Path, exp_id: str, tmp: Path, cache: Path, n: int, tag: str
) -> dict[str, list[dict[str, Any]]]:
    """Interleaved Flowyard runs, USE_CONDA true on a cached environment and USE_CONDA false."""
    out: dict[str, list[dict[str, Any]]] = {"warm": [], "none": []}
    with env_vars(XDG_CACHE_HOME=str(cache)):
        for i in range(n):
            for case in ("warm", "none") if i % 2 == 0 else ("none", "warm"):
                log = tmp / "logs" / f"{tag}-{i + 1}-{case}.log"
                sample = flowyard_run(url, project, exp_id, use_conda=case == "warm", log=log)
                if case == "warm" and sample.verb != "reusing cached":
                    raise RuntimeError(f"a warm Flowyard run said {sample.verb!r}")
                out[case].append(asdict(sample))
                step = "" if sample.step is None else f"  env step {sample.step:7.3f} s"
                console.print(
                    f"  {tag} {i + 1}  USE_CONDA {case == 'warm'!s:5s}: "
                    f"wall {sample.wall:7.3f} s{step}"
                )
    return out


def warm_parts(url: str, project: Path, cache: Path) -> dict[str, float]:
    """What the runner's warm start does, in this process (best of a few)."""
    spec = from_python_env(project / "python_env.yaml")
    with Client(url) as client:
        version = str(client.info()["mlflow_version"])

    def ensure() -> None:
        if builder.ensure(spec, version, lambda _chunk: None).built:
            raise RuntimeError("the environment was not cached")

    def ensure_fresh_process() -> None:
        builder.uv_version.cache_clear()  # a runner started fresh asks uv's version again
        ensure()

    with env_vars(XDG_CACHE_HOME=str(cache)):
        builder.uv_version()
        hashed = best_of(ensure, PART_REPEATS)
        fresh = best_of(ensure_fresh_process, PART_REPEATS)
    version_only = best_of(
        lambda: subprocess.run([builder.uv_bin(), "--version"], capture_output=True, check=True),
        PART_REPEATS,
    )
    return {
        "builder.ensure, uv's version known (local runners: forked from the submitter)": hashed,
        "builder.ensure, first call in a process (process computes' runners)": fresh,
        "`uv --version` alone": version_only,
    }


# -- reporting -------------------------------------------------------------------------------


def _col(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key) is not None]


def _fmt(xs: list[float], f: Callable[[list[float]], float] = median, empty: str = "") -> str:
    return f"{f(xs):.3f}" if xs else empty


def render(res: dict[str, Any], c: Counts) -> list[dict[str, Any]]:
    render_rounds(res, c)
    render_uv(res)
    render_pairs(
        res["pairs"],
        f"Flowyard warm start vs no environment (USE_CONDA false), {c.pairs} interleaved "
        "pair(s), seconds",
    )
    render_pairs(
        res["default_bytecode"],
        "The same under this machine's default PYTHONDONTWRITEBYTECODE=1 (no pycache prefix), "
        f"{c.default_bytecode_pairs} pair(s), seconds",
    )
    render_parts(res)
    render_containers(res["containers"])
    return goals(res)


def render_rounds(res: dict[str, Any], c: Counts) -> None:
    runs, failed = res["rounds"], res["failed"]
    t = new_table(
        f"The example's environment: cold build, then warm start ({c.rounds} round(s) "
        "per contender, steps=1), seconds",
        (
            *("contender", "case", "n", "wall med", "wall min", "env step med", "env step min"),
            *("before entry point med", "entry point med"),
        ),
        left=2,
    )
    for name in CONTENDERS:
        for case in ("cold", "warm"):
            rows = runs[name][case]
            if rows:
                walls, steps = _col(rows, "wall"), _col(rows, "step")
                t.add_row(
                    LABELS[name],
                    case,
                    str(len(rows)),
                    _fmt(walls),
                    _fmt(walls, min),
                    _fmt(steps),
                    _fmt(steps, min),
                    _fmt(_col(rows, "to_running")),
                    _fmt(_col(rows, "entry_point")),
                )
        if name in failed:
            t.add_row(LABELS[name], "", "", "failed", "", "", "", "", "", style="red")
    fy, uv = runs["flowyard"], runs["mlflow_uv"]
    keys = ("wall", "step", "to_running", "entry_point")
    if fy["cold"] and uv["cold"]:
        t.add_section()
        a, b = ({k: _col(x["cold"], k) for k in keys} for x in (fy, uv))
        t.add_row(
            "ratio flowyard / mlflow uv",
            "cold",
            "",
            ratio_cell(median(a["wall"]), median(b["wall"])),
            ratio_cell(min(a["wall"]), min(b["wall"])),
            ratio_cell(median(a["step"]), median(b["step"])),
            ratio_cell(min(a["step"]), min(b["step"])),
            ratio_cell(median(a["to_running"]), median(b["to_running"])),
            ratio_cell(median(a["entry_point"]), median(b["entry_point"])),
            style="cyan",
        )
    if fy["warm"] and uv["warm"]:
        a, b = ({k: _col(x["warm"], k) for k in keys} for x in (fy, uv))
        t.add_row(
            "flowyard - mlflow uv",
            "warm",
            "",
            diff_cell(median(a["wall"]), median(b["wall"])),
            diff_cell(min(a["wall"]), min(b["wall"])),
            diff_cell(median(a["step"]), median(b["step"])),
            diff_cell(min(a["step"]), min(b["step"])),
            diff_cell(median(a["to_running"]), median(b["to_running"])),
            diff_cell(median(a["entry_point"]), median(b["entry_point"])),
            style="cyan",
        )
    console.print(t)
    console.print(
        "  before entry point: flowyard, job submitted → running (its events); mlflow, the call "
        "until `_run_entry_point`. entry point: flowyard, running → finalizing; mlflow, "
        "`_run_entry_point` until the call returns."
    )
    for name in CONTENDERS:
        rows = runs[name]["cold"]
        if rows:
            console.print(f"  {LABELS[name]}: base interpreter {escape(rows[0]['python'])}")
        if name in failed:
            console.print(f"  {LABELS[name]}: [red]failed[/]: {escape(failed[name])}")


def render_uv(res: dict[str, Any]) -> None:
    runs = res["rounds"]
    t = new_table(
        "Inside the cold builds: uv's own timings from its output (medians; MLflow runs uv "
        "twice, for build_dependencies then dependencies, summed), seconds",
        (
            *("contender", "n", "resolve", "prepare", "install", "packages", "env step"),
            "rest of the step (uv venv, spawns, ...)",
        ),
    )
    for name in ("flowyard", "mlflow_uv"):
        rows = runs[name]["cold"]
        if not rows:
            continue
        uvs = [r["uv"] for r in rows]
        parts = {k: _col(uvs, f"{k}_s") for k in ("resolved", "prepared", "installed")}
        steps = _col(rows, "step")
        rest = [
            float(r["step"]) - sum(float(r["uv"].get(f"{k}_s", 0.0)) for k in parts) for r in rows
        ]
        t.add_row(
            LABELS[name],
            str(len(rows)),
            *(_fmt(parts[k], empty="none") for k in ("resolved", "prepared", "installed")),
            f"{median(_col(uvs, 'installed_packages')):.0f}" if uvs[0] else "",
            _fmt(steps),
            _fmt(rest),
        )
    console.print(t)
    console.print(
        "  uv prints `Prepared N packages` only when it downloads or builds one: 'none' means "
        "every wheel came from its cache."
    )


def render_pairs(pairs: dict[str, list[dict[str, Any]]], title: str) -> None:
    t = new_table(
        title,
        (
            *("case", "n", "wall med", "wall min", "wall max", "wall mean"),
            *("env step med", "submitted → running med", "entry point med"),
        ),
    )
    names = {"warm": "flowyard USE_CONDA true (cached)", "none": "flowyard USE_CONDA false"}
    for case, label in names.items():
        rows = pairs[case]
        walls = _col(rows, "wall")
        t.add_row(
            label,
            str(len(rows)),
            *(_fmt(walls, f) for f in SUMMARIES),
            _fmt(_col(rows, "step")),
            _fmt(_col(rows, "to_running")),
            _fmt(_col(rows, "entry_point")),
        )
    t.add_section()
    w, n = pairs["warm"], pairs["none"]
    t.add_row(
        "added by the environment",
        "",
        *(diff_cell(f(_col(w, "wall")), f(_col(n, "wall"))) for f in SUMMARIES),
        "",
        diff_cell(median(_col(w, "to_running")), median(_col(n, "to_running"))),
        diff_cell(median(_col(w, "entry_point")), median(_col(n, "entry_point"))),
        style="cyan",
    )
    console.print(t)


def render_parts(res: dict[str, Any]) -> None:
    t = new_table(
        f"What a Flowyard warm start is made of (in this process, best of {PART_REPEATS}), seconds",
        ("what", "wall"),
    )
    for label, s in res["warm_parts"].items():
        t.add_row(escape(label), f"{s:.4f}")
    t.add_section()
    steps = _col(res["pairs"]["warm"], "step") + _col(res["rounds"]["flowyard"]["warm"], "step")
    t.add_row(
        "for comparison: the runner's `reusing cached` step, median (logged to 0.01 s)",
        _fmt(steps),
    )
    console.print(t)


def goals(res: dict[str, Any]) -> list[dict[str, Any]]:
    fy, uv = res["rounds"]["flowyard"], res["rounds"]["mlflow_uv"]
    pairs = res["pairs"]
    steps = _col(pairs["warm"], "step") + _col(fy["warm"], "step")
    step = median(steps)
    added = median(_col(pairs["warm"], "wall")) - median(_col(pairs["none"], "wall"))
    out: list[dict[str, Any]] = [
        {
            "goal": f"flowyard warm start: the runner's environment step <= {WARM_GOAL_S} s "
            "(median `reusing cached` time)",
            "value": f"{step:.3f} s",
            "met": step <= WARM_GOAL_S,
        },
        {
            "goal": f"flowyard warm start adds <= {WARM_GOAL_S} s of wall time to a USE_CONDA "
            "false run (median difference)",
            "value": f"{added:+.3f} s",
            "met": added <= WARM_GOAL_S,
        },
    ]
    for key, what in (("step", "environment step"), ("wall", "run wall time")):
        goal = f"flowyard cold build no slower than mlflow's uv manager cold (median {what})"
        if not uv["cold"]:
            reason = res["failed"].get("mlflow_uv", "no run")
            out.append({"goal": goal, "value": f"mlflow uv: {reason}", "met": False})
            continue
        f, m = median(_col(fy["cold"], key)), median(_col(uv["cold"], key))
        out.append({"goal": goal, "value": f"{f:.3f} s vs {m:.3f} s, {f / m:.2f}x", "met": f <= m})
    return out


# -- containers ------------------------------------------------------------------------------


def container_projects(tmp: Path) -> tuple[Path, Path] | str:
    """The docker_env project and its plain twin, or why containers cannot run here."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from flowyard.env import containers
    from flowyard.errors import EnvBuildError

    try:
        engine = containers.engine()
    except EnvBuildError as e:
        return e.message
    from tests.images import base_image

    console.print(f"  engine: {engine.describe()}; base image (built once per machine)...")
    image = base_image(engine)
    plain = tmp / "plain"
    plain.mkdir(parents=True)
    (plain / "MLproject").write_text(
        "name: c\nentry_points:\n  main:\n    command: python main.py\n"
    )
    (plain / "main.py").write_text(CONTAINER_MAIN)
    boxed = tmp / "boxed"
    shutil.copytree(plain, boxed)
    (boxed / "MLproject").write_text(
        f"name: c\ndocker_env:\n  image: {image}\n"
        + ("entry_points:\n  main:\n    command: python main.py\n")
    )
    return boxed, plain


def container_run(url: str, project: Path, exp_id: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    submitted = mlflow.projects.run(
        str(project),
        backend="flowyard",
        backend_config={"STREAM_OUTPUT": False},
        experiment_id=exp_id,
    )
    wall = time.perf_counter() - t0
    run = mlflow.MlflowClient().get_run(submitted.run_id)
    if run.info.status != "FINISHED" or "x" not in run.data.metrics:
        raise RuntimeError(f"run {run.info.run_id} is {run.info.status}, {run.data.metrics}")
    with Client(url) as client:
        text = job_log(client, submitted.run_id)
        sample: dict[str, Any] = {"wall": wall, **job_phases(client.get_job(submitted.run_id))}
    if found := IMAGE_LINE.search(text):
        sample["verb"], sample["step"] = found[1], float(found[3])
    return sample


def measure_containers(url: str, exp_id: str, tmp: Path, n: int) -> dict[str, Any]:
    """A cached docker_env job against the same project as a plain process job, interleaved."""
    projects = container_projects(tmp / "containers")
    if isinstance(projects, str):
        console.print(f"  skipped: {projects}")
        return {"skipped": projects}
    boxed, plain = projects
    first = container_run(url, boxed, exp_id)
    console.print(
        f"  first container run (untimed): {first.get('verb')} its image, {first['wall']:.2f} s"
    )
    out: dict[str, Any] = {"container": [], "plain": []}
    for i in range(n):
        for case in ("container", "plain") if i % 2 == 0 else ("plain", "container"):
            sample = container_run(url, boxed if case == "container" else plain, exp_id)
            if case == "container" and sample.get("verb") != "reusing cached":
                raise RuntimeError(f"a warm container run said {sample.get('verb')!r}")
            out[case].append(sample)
            console.print(f"  container pair {i + 1} {case:9s}: wall {sample['wall']:7.3f} s")
    return out


def render_containers(res: dict[str, Any]) -> None:
    if "skipped" in res:
        console.print(f"[bold]Containers[/]: skipped ({escape(res['skipped'])})")
        return
    t = new_table(
        "Containers: docker_env on a cached image vs a plain process job, seconds",
        ("case", "n", "wall med", "submitted → running med", "entry point med", "image step med"),
    )
    names = {"container": "docker_env, cached image", "plain": "plain process job"}
    for case, label in names.items():
        rows = res[case]
        t.add_row(
            label,
            str(len(rows)),
            _fmt(_col(rows, "wall")),
            _fmt(_col(rows, "to_running")),
            _fmt(_col(rows, "entry_point")),
            _fmt(_col(rows, "step")),
        )
    t.add_section()
    c, p = res["container"], res["plain"]
    t.add_row(
        "container / plain",
        "",
        ratio_cell(median(_col(c, "wall")), median(_col(p, "wall"))),
        ratio_cell(median(_col(c, "to_running")), median(_col(p, "to_running"))),
        ratio_cell(median(_col(c, "entry_point")), median(_col(p, "entry_point"))),
        "",
        style="cyan",
    )
    t.add_row(
        "added by the container",
        "",
        diff_cell(median(_col(c, "wall")), median(_col(p, "wall"))),
        diff_cell(median(_col(c, "to_running")), median(_col(p, "to_running"))),
        diff_cell(median(_col(c, "entry_point")), median(_col(p, "entry_point"))),
        "",
        style="cyan",
    )
    console.print(t)


# -- main ------------------------------------------------------------------------------------


def run_all(counts: Counts, tmp: Path) -> dict[str, Any]:
    # The entry point's `python` (USE_CONDA false), MLflow's `uv` and the runner's are this
    # environment's; MLflow's virtualenv manager finds pyenv on PATH as before. Every
    # interpreter caches bytecode in a temp folder of its own: a new environment's first run
    # compiles its imports (whoever built it), later runs load them.
    prepare_child_env(tmp)
    os.environ.pop("VIRTUAL_ENV", None)
    os.environ["UV_CACHE_DIR"] = str(tmp / "uv-cache")  # shared by every uv build
    os.environ["PIP_CACHE_DIR"] = str(tmp / "pip-cache")  # the virtualenv manager's pip
    os.environ["PYENV_ROOT"] = str(tmp / "pyenv-root")  # where `pyenv install` would put one
    os.environ["PYTHON_BUILD_CURL_OPTS"] = CURL_OPTS
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache-server")
    project = copy_example(tmp / "sklearn_elasticnet")
    console.print("Starting the Flowyard server...")
    with running_server(tmp / "server") as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        mlflow.set_tracking_uri(url)
        exp_id = mlflow.set_experiment("bench-env").experiment_id
        console.print(f"Warm-up (untimed): a Flowyard build into uv's empty cache, {url}")
        t0 = time.perf_counter()
        first = warm_up(url, project, exp_id, tmp)
        console.print(
            f"  warm-up done in {time.perf_counter() - t0:.1f} s (its build: {first.step:.1f} s, "
            f"Python {first.python})"
        )
        console.print("[bold]Part 1[/]: cold builds and warm starts")
        runs, failed, cache = measure_rounds(url, project, exp_id, tmp, counts)
        console.print("[bold]Part 2[/]: warm start vs USE_CONDA false")
        pairs = measure_pairs(url, project, exp_id, tmp, cache, counts.pairs, "pair")
        parts = warm_parts(url, project, cache)
        console.print("[bold]Part 3[/]: the same under PYTHONDONTWRITEBYTECODE=1")
        with env_vars(PYTHONDONTWRITEBYTECODE="1", PYTHONPYCACHEPREFIX=None):
            default = measure_pairs(
                url, project, exp_id, tmp, cache, counts.default_bytecode_pairs, "dwb"
            )
        console.print("[bold]Part 4[/]: a docker_env job on a cached image vs a plain job")
        boxes = measure_containers(url, exp_id, tmp, counts.container_pairs)
    return {
        "containers": boxes,
        "warmup": asdict(first),
        "rounds": runs,
        "failed": failed,
        "pairs": pairs,
        "warm_parts": parts,
        "default_bytecode": default,
    }


def containers_only(counts: Counts, tmp: Path) -> dict[str, Any]:
    prepare_child_env(tmp)
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache-server")
    with running_server(tmp / "server") as url:
        os.environ["MLFLOW_TRACKING_URI"] = url
        mlflow.set_tracking_uri(url)
        exp_id = mlflow.set_experiment("bench-env-containers").experiment_id
        console.print("[bold]Part 4[/]: a docker_env job on a cached image vs a plain job")
        return measure_containers(url, exp_id, tmp, counts.container_pairs)


def main() -> int:
    parser = bench_parser(__doc__, "one round, one pair")
    parser.add_argument("--containers-only", action="store_true", help="part 4 alone")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    if args.containers_only:
        with tempfile.TemporaryDirectory(prefix="fy-bench-env-") as tmp:
            boxes = containers_only(counts, Path(tmp))
        render_containers(boxes)
        if args.json:
            write_json(args.json, args.quick, counts, console, results={"containers": boxes})
        return 0
    console.print(
        header_line(args.quick, tools=builder.uv_version())
        + f"  load average {os.getloadavg()[0]:.2f}"
    )
    console.print(
        "Note: one Flowyard server (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false) on a fresh SQLite "
        "file tracks every run; the example project is copied to a temp folder. uv's download "
        "cache (UV_CACHE_DIR, a temp folder) is shared by Flowyard and MLflow's uv manager and "
        "warmed by one untimed Flowyard build first, so 'cold' means a new environment, not new "
        "downloads (uv may still revalidate PyPI's index pages). MLflow's virtualenv manager "
        "uses pyenv (PYENV_ROOT in the temp folder) and pip (PIP_CACHE_DIR in the temp folder, "
        "not warmed). PYTHONDONTWRITEBYTECODE is unset and bytecode goes to a temp "
        "PYTHONPYCACHEPREFIX: a cold run's entry point compiles its new environment's imports, "
        "whoever built it; a warm one loads them. Part 3 puts this machine's "
        "PYTHONDONTWRITEBYTECODE=1 back."
    )
    with tempfile.TemporaryDirectory(prefix="fy-bench-env-") as tmp:
        results = run_all(counts, Path(tmp))
    checked = render(results, counts)
    console.print(f"Load average at the end (1 min): {os.getloadavg()[0]:.2f}")
    print_goals(console, checked)
    if args.json:
        write_json(
            args.json,
            args.quick,
            counts,
            console,
            uv=builder.uv_version(),
            load_average_end=os.getloadavg(),
            results=results,
            goals=checked,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
