"""Benchmark a Flowyard sweep against the loop a user would otherwise write: Optuna's own
``study.optimize(n_jobs=SLOTS)`` running each trial with ``mlflow.projects.run(backend="local")``.

One Flowyard workspace server (SQLite, 127.0.0.1) tracks both sides; Flowyard's trials run on a
`process` compute of SLOTS slots. The trial is a small MLflow project that sleeps TRIAL_S and
logs `loss = (x - 2)^2`; both sides draw x with Optuna's seeded RandomSampler. Rounds interleave
the two sides. Measured per side:

- wall: from the call to its return (the whole search, as the user waits for it);
- slot-busy time: each trial's own time on its slot (Flowyard: its job from dispatch to its end,
  the runner's whole life; the peer: its `mlflow.projects.run` call);
- idle slot time per trial: (SLOTS x wall - the trials' slot-busy time) / trials, the slot time
  spent on no trial, the sweep's start and its tail (slots idle while the last trials finish)
  included;
- Flowyard's hand-off: a trial's end to the dispatch of the trial that takes its slot (the
  controller tells Optuna, draws, submits; the dispatcher claims and starts the runner), the
  scheduling overhead per trial proper;
- slot utilisation: slot-busy time / (SLOTS x wall).

    python bench/sweep.py             # full run: 100 trials, 2 rounds per side
    python bench/sweep.py --quick     # smoke run: 16 trials, 1 round
    python bench/sweep.py --trials 40 --rounds 1 --json results.json
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import JobStatus

from common import (
    BIN,
    bench_parser,
    header_line,
    make_console,
    median,
    new_table,
    prepare_child_env,
    print_goals,
    running_server,
    wall_time,
    write_json,
)

SLOTS = 4
TRIAL_S = 1.0
COMPUTE = "bench-sweep"
OVERHEAD_GOAL_S = 0.1
UTILISATION_GOAL = 0.90
console = make_console()


@dataclass(frozen=True)
class Counts:
    trials: int
    rounds: int


FULL = Counts(trials=100, rounds=2)
QUICK = Counts(trials=16, rounds=1)

MLPROJECT = """\
name: bench-sweep
entry_points:
  main:
    parameters:
      x: {type: float, default: 0.0}
      sleep_s: {type: float, default: 1.0}
    command: "python main.py {x} {sleep_s}"
"""
MAIN_PY = """\
import sys
import time

import mlflow

x, sleep_s = float(sys.argv[1]), float(sys.argv[2])
time.sleep(sleep_s)
mlflow.log_metric("loss", (x - 2) ** 2)
"""


def write_trial_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "MLproject").write_text(MLPROJECT)
    (folder / "main.py").write_text(MAIN_PY)
    return folder


def create_compute(url: str) -> None:
    import subprocess

    done = subprocess.run(
        [str(BIN / "flowyard"), "compute", "create", COMPUTE, "--type", "process",
         "--max-concurrent-jobs", str(SLOTS)],
        env={**os.environ, "FLOWYARD_WORKSPACE_URL": url},
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"`flowyard compute create` failed:\n{done.stderr}")


def _result(wall: float, busy: list[float], best: float) -> dict[str, Any]:
    n = len(busy)
    idle = SLOTS * wall - sum(busy)
    return {
        "wall_s": wall,
        "trials": n,
        "busy_s": sum(busy),
        "median_trial_s": median(busy),
        "idle_per_trial_s": idle / n,
        "utilisation": sum(busy) / (SLOTS * wall),
        "best": best,
    }


def flowyard_sweep(client: Client, project: Path, trials: int, seed: int) -> dict[str, Any]:
    spec = {
        "search_space": {"x": {"type": "uniform", "low": -5, "high": 5}},
        "sampling": {"algorithm": "random", "seed": seed},
        "objective": {"metric": "loss", "goal": "minimize"},
        # No max_concurrent_trials: the compute's slots govern (and one trial waits queued).
        "limits": {"max_trials": trials},
    }
    t0 = time.perf_counter()
    run = mlflow.projects.run(
        str(project),
        parameters={"sleep_s": TRIAL_S},
        backend="flowyard",
        backend_config={
            "COMPUTE": COMPUTE,
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "SWEEP": spec,
        },
    )
    wall = time.perf_counter() - t0
    sweep = client.get_sweep(run.run_id)
    if sweep.job.status != JobStatus.COMPLETED or len(sweep.trials) != trials:
        raise RuntimeError(f"sweep {run.run_id} ended {sweep.job.status}: {sweep.job.events[-1]}")
    busy, starts, ends = [], [], []
    for trial in sweep.trials:
        job = client.get_job(trial.run_id)
        dispatched = next(e.at for e in job.events if e.to_status == JobStatus.PREPARING)
        assert job.ended_at is not None
        starts.append(wall_time(dispatched))
        ends.append(wall_time(job.ended_at))
        busy.append(ends[-1] - starts[-1])
    out = _result(wall, busy, sweep.best_value or float("nan"))
    # The i-th dispatch after the first SLOTS takes the slot the i-th end freed.
    starts.sort()
    ends.sort()
    handoffs = [s - e for s, e in zip(starts[SLOTS:], ends, strict=False)]
    out["handoff_median_s"] = median(handoffs) if handoffs else float("nan")
    out["handoff_mean_s"] = sum(handoffs) / len(handoffs) if handoffs else float("nan")
    parent = sweep.job
    assert parent.ended_at is not None
    out["server_wall_s"] = wall_time(parent.ended_at) - wall_time(parent.submitted_at)
    return out


def optuna_loop(project: Path, trials: int, seed: int) -> dict[str, Any]:
    """What MLflow's hyperparameter example does, in parallel: Optuna drives, each trial is a
    local MLflow project run (a subprocess) tracked in the same workspace."""
    busy: list[float] = []
    lock = threading.Lock()
    tracking = MlflowClient()

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -5, 5)
        t0 = time.perf_counter()
        run = mlflow.projects.run(
            str(project),
            parameters={"x": x, "sleep_s": TRIAL_S},
            backend="local",
            env_manager="local",
            synchronous=True,
        )
        with lock:
            busy.append(time.perf_counter() - t0)
        return float(tracking.get_run(run.run_id).data.metrics["loss"])

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    t0 = time.perf_counter()
    study.optimize(objective, n_trials=trials, n_jobs=SLOTS)
    wall = time.perf_counter() - t0
    return _result(wall, busy, study.best_value)


def main() -> int:
    parser = bench_parser(__doc__, f"{QUICK.trials} trials, {QUICK.rounds} round")
    parser.add_argument("--trials", type=int, help=f"trials per sweep (default {FULL.trials})")
    parser.add_argument("--rounds", type=int, help=f"rounds per side (default {FULL.rounds})")
    args = parser.parse_args()
    counts = QUICK if args.quick else FULL
    if args.trials:
        counts = replace(counts, trials=args.trials)
    if args.rounds:
        counts = replace(counts, rounds=args.rounds)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console.print(
        header_line(
            args.quick,
            f"{counts.trials} trials of {TRIAL_S:g} s on {SLOTS} slots, {counts.rounds} round(s)",
            f"Optuna {optuna.__version__}",
        )
    )
    results: dict[str, list[dict[str, Any]]] = {"flowyard": [], "optuna+mlflow local": []}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp_name:
        tmp = Path(tmp_name)
        prepare_child_env(tmp)
        os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
        project = write_trial_project(tmp / "project")
        with running_server(tmp / "server") as url:
            mlflow.set_tracking_uri(url)
            os.environ["MLFLOW_TRACKING_URI"] = url
            mlflow.set_experiment("bench-sweep")
            create_compute(url)
            with Client(url) as client:
                # Warm-up: bytecode compiled into the fresh cache, the server's paths warm.
                flowyard_sweep(client, project, SLOTS, seed=0)
                for i in range(counts.rounds):
                    seed = 100 + i
                    for side in (("flowyard", "optuna+mlflow local") if i % 2 == 0 else
                                 ("optuna+mlflow local", "flowyard")):  # fmt: skip
                        console.print(f"  round {i + 1}: {side} ...")
                        if side == "flowyard":
                            found = flowyard_sweep(client, project, counts.trials, seed)
                        else:
                            found = optuna_loop(project, counts.trials, seed)
                        results[side].append(found)
                        console.print(
                            f"    wall {found['wall_s']:.1f} s, idle slot time/trial "
                            f"{found['idle_per_trial_s']:.3f} s, utilisation "
                            f"{found['utilisation']:.1%}"
                        )
    table = new_table(
        "Sweep of random search (medians over rounds)",
        ("side", "wall s", "trial s (median)", "idle slot s/trial", "slot utilisation", "best"),
    )
    summary: dict[str, dict[str, float]] = {}
    for side, rounds in results.items():
        summary[side] = {k: median([r[k] for r in rounds]) for k in rounds[0]}
        s = summary[side]
        table.add_row(
            side, f"{s['wall_s']:.1f}", f"{s['median_trial_s']:.2f}",
            f"{s['idle_per_trial_s']:.3f}", f"{s['utilisation']:.1%}", f"{s['best']:.4g}",
        )  # fmt: skip
    console.print(table)
    fy, peer = summary["flowyard"], summary["optuna+mlflow local"]
    console.print(
        f"Flowyard / peer: wall {fy['wall_s'] / peer['wall_s']:.2f}x, idle slot time per trial "
        f"{fy['idle_per_trial_s'] / peer['idle_per_trial_s']:.2f}x. Flowyard's hand-off (a "
        f"trial's end to the next trial's dispatch): median {fy['handoff_median_s']:.3f} s, "
        f"mean {fy['handoff_mean_s']:.3f} s"
    )
    print_goals(
        console,
        [
            {
                "goal": f"scheduling overhead per trial (hand-off, mean) <= {OVERHEAD_GOAL_S} s",
                "value": f"{fy['handoff_mean_s']:.3f} s",
                "met": fy["handoff_mean_s"] <= OVERHEAD_GOAL_S,
            },
            {
                "goal": "idle slot time per trial (start and tail included)",
                "value": f"{fy['idle_per_trial_s']:.3f} s",
                "met": None,
            },
            {
                "goal": f"{SLOTS} slots >= {UTILISATION_GOAL:.0%} busy",
                "value": f"{fy['utilisation']:.1%}",
                "met": fy["utilisation"] >= UTILISATION_GOAL,
            },
        ],
        note=f"{counts.trials} trials",
    )
    if args.json:
        write_json(args.json, args.quick, counts, console, rounds=results, summary=summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
