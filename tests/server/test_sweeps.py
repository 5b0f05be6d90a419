"""Sweeps end to end, with real Optuna against a real workspace and a 4-slot process compute: a
project whose loss is a known function of its parameters (tests/projects/sweep) is searched by
grid, random and TPE, pruned by the median policy, canceled, and driven through a `kill -9` of
its server."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.credentials import find_token
from flowyard.errors import InvalidRequestError
from flowyard.schemas import JobStatus, SweepOut
from flowyard.sweep import TRIAL_HEADER
from tests.servers import FAST, Server, fast_workspace, run_cli

PROJECT = Path(__file__).resolve().parents[1] / "projects" / "sweep"
COMPUTE = "sweeps"
# A lease short enough that a restarted server takes its sweeps back within seconds; a heartbeat
# timeout long enough that a busy machine's slow runner is not taken for lost (a failed trial
# would change what a seeded search draws next).
ENV = {"FLOWYARD_SWEEP_LEASE_S": "2", "FLOWYARD_HEARTBEAT_TIMEOUT_S": "30"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("sweeps"), env=ENV)
    created = run_cli(
        "compute",
        "create",
        COMPUTE,
        "--type",
        "process",
        "--max-concurrent-jobs",
        "4",
        cwd=server.cwd,
        env={"FLOWYARD_WORKSPACE_URL": server.url},
    )
    assert created.returncode == 0, created.stderr
    yield server
    server.stop()


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"sweep-{tmp_path.name}")
    with Client(workspace.url) as client:
        yield client
    mlflow.set_tracking_uri(None)


def _sweep(spec: dict[str, Any], *, wait: bool = True, **parameters: Any) -> str:
    run = mlflow.projects.run(
        str(PROJECT),
        parameters=parameters,
        backend="flowyard",
        synchronous=wait,
        backend_config={
            "COMPUTE": COMPUTE,
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "SWEEP": spec,
        },
    )
    return str(run.run_id)


def _done(client: Client, sweep_id: str, timeout: float = 240) -> SweepOut:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = client.get_sweep(sweep_id)
        if sweep.job.status.is_final and all(t.status.is_final for t in sweep.trials):
            return sweep
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} did not end: {client.get_sweep(sweep_id)}")


def test_a_grid_sweep_covers_the_grid_and_its_parent_holds_the_best(client: Client) -> None:
    spec = {
        "search_space": {
            "x": {"type": "choice", "values": [0, 1, 2, 3]},
            "kind": {"type": "choice", "values": ["good", "bad"]},
        },
        "sampling": {"algorithm": "grid", "seed": 3},
        "objective": {"metric": "loss", "goal": "minimize"},
        "limits": {"max_concurrent_trials": 4},
    }
    sweep_id = _sweep(spec, y=-1, steps=2)
    sweep = client.get_sweep(sweep_id)
    assert sweep.job.status == JobStatus.COMPLETED, sweep.job.events[-1].reason
    assert sweep.job.kind == "sweep"
    points = {(t.parameters["x"], t.parameters["kind"]) for t in sweep.trials}
    assert points == {(str(x), k) for x in range(4) for k in ("good", "bad")}
    assert [t.number for t in sorted(sweep.trials, key=lambda t: t.number)] == list(range(8))
    # Sorted by the objective: the best (x=2, good: loss 0) first.
    assert sweep.trials[0].parameters == {"x": "2", "kind": "good"}
    assert sweep.trials[0].value == pytest.approx(0.0)
    values = [t.value for t in sweep.trials]
    assert values == sorted(values)
    # MLflow nests the trials under the sweep's run, which holds the best trial.
    tracking = MlflowClient()
    parent = tracking.get_run(sweep_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["x"] == "2" and parent.data.params["kind"] == "good"
    assert parent.data.params["y"] == "-1"  # the parameters every trial shares
    assert parent.data.metrics["loss"] == pytest.approx(0.0)
    assert parent.data.tags["flowyard.sweep.best_trial"] == sweep.trials[0].run_id
    children = tracking.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{sweep_id}'"
    )
    assert {r.info.run_id for r in children} == {t.run_id for t in sweep.trials}
    assert all(r.info.status == "FINISHED" for r in children)
    # The sweep's log says what happened, ending with the best trial.
    log = client.read_log(sweep_id, 0)[0].decode()
    assert log.count("queued:") == 8 and "best: trial" in log
    # The studio's sweep page: progress, best so far, parallel coordinates, the trials best first.
    page = httpx.get(
        f"{client.url}/studio/sweeps/{sweep_id}",
        headers={"Authorization": f"Bearer {find_token(client.url)}"},
        timeout=30,
    )
    assert page.status_code == 200, page.text
    html = page.text
    assert "8 of 8 trials:" in html and "8 completed" in html
    assert 'id="best-so-far"' in html and html.count("<polyline data-trial=") == 8
    rows = re.findall(r'<tr data-trial="(\d+)" data-state="(\w+)">', html)
    assert [int(n) for n, _ in rows] == [t.number for t in sweep.trials]
    assert 'stroke="#dc2626"' in html  # the best trial's line
    job_page = httpx.get(
        f"{client.url}/studio/jobs/{sweep.trials[0].run_id}",
        headers={"Authorization": f"Bearer {find_token(client.url)}"},
        timeout=30,
    )
    assert f'href="/studio/sweeps/{sweep_id}">Trial ' in job_page.text


def _search(algorithm: str, seed: int) -> dict[str, Any]:
    return {
        "search_space": {
            "x": {"type": "uniform", "low": -10, "high": 10},
            "y": {"type": "uniform", "low": -10, "high": 10},
        },
        "sampling": {"algorithm": algorithm, "seed": seed},
        "objective": {"metric": "loss", "goal": "minimize"},
        # One at a time: each draw then sees every earlier result, whatever the machine's
        # speed, so the seeded search is the same on every run (in parallel, which results a
        # draw sees depends on timing).
        "limits": {"max_trials": 30, "max_concurrent_trials": 1},
    }


def _best(client: Client, sweep_id: str) -> float:
    sweep = _done(client, sweep_id, timeout=1000)
    assert sweep.job.status == JobStatus.COMPLETED
    assert len(sweep.trials) == 30
    assert all(t.status == JobStatus.COMPLETED for t in sweep.trials), sweep.trials
    assert sweep.best_value is not None
    return sweep.best_value


@pytest.mark.slow
# 30 trials one after another in each of two sweeps side by side: minutes on a busy machine.
@pytest.mark.timeout(1200)
def test_seeded_tpe_finds_a_better_objective_than_seeded_random(client: Client) -> None:
    tpe = _sweep(_search("bayesian", seed=11), wait=False, steps=1)
    random = _sweep(_search("random", seed=11), wait=False, steps=1)
    best_tpe, best_random = _best(client, tpe), _best(client, random)
    assert best_tpe < best_random, (best_tpe, best_random)


def test_median_pruning_stops_hopeless_trials_early_saying_why(client: Client) -> None:
    steps = 8
    spec = {
        "search_space": {"x": {"type": "uniform", "low": -8, "high": 8}},
        "sampling": {"algorithm": "random", "seed": 5},
        "objective": {"metric": "loss", "goal": "minimize"},
        "limits": {"max_trials": 16, "max_concurrent_trials": 4},
        "early_termination": {
            "policy": "median",
            "delay_evaluation": 2,
            "evaluation_interval": 1,
            "startup_trials": 3,
        },
    }
    sweep_id = _sweep(spec, y=-1, steps=steps, step_s=0.4)
    sweep = client.get_sweep(sweep_id)
    assert sweep.job.status == JobStatus.COMPLETED
    assert len(sweep.trials) == 16
    # Hopeless: a trial whose known loss is worse than the median of all the sweep's trials.
    known = {t.number: (float(t.parameters["x"]) - 2) ** 2 for t in sweep.trials}
    median = sorted(known.values())[len(known) // 2]
    hopeless = [t for t in sweep.trials if known[t.number] > median]
    stopped = [t for t in hopeless if t.state == "pruned"]
    assert len(stopped) * 3 >= len(hopeless), [(t.number, t.state, t.last_step) for t in hopeless]
    for trial in (t for t in sweep.trials if t.state == "pruned"):
        assert trial.status == JobStatus.CANCELED
        assert trial.last_step is not None and trial.last_step < steps - 1
        assert trial.reason is not None
        assert trial.reason.startswith("stopped early by median policy at step "), trial.reason
        assert " worse than median " in trial.reason
        assert MlflowClient().get_run(trial.run_id).info.status == "KILLED"
    # No good trial is stopped: the best one ran to its end.
    assert sweep.trials[0].state == "complete"


@pytest.mark.slow
def test_a_sweep_survives_kill_9_with_exactly_max_trials(client: Client, workspace: Server) -> None:
    """kill -9 the server mid-sweep; while it is down, a trial is drawn and never submitted (as
    a controller killed between Optuna's ask and the trial's job leaves it); restart: the sweep
    ends with exactly max_trials trials, each run once."""
    import optuna

    spec = {
        "search_space": {"x": {"type": "uniform", "low": -5, "high": 5}},
        "sampling": {"algorithm": "bayesian", "seed": 2},
        "objective": {"metric": "loss", "goal": "minimize"},
        "limits": {"max_trials": 12, "max_concurrent_trials": 4},
    }
    sweep_id = _sweep(spec, wait=False, steps=3, step_s=0.3)
    deadline = time.monotonic() + 120
    while sum(t.status.is_final for t in client.get_sweep(sweep_id).trials) < 2:
        assert time.monotonic() < deadline, "no trial ended"
        time.sleep(0.2)
    workspace.kill()
    db = f"sqlite:///{workspace.cwd / 'ws' / 'flowyard.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(db, skip_compatibility_check=True)
    study = optuna.load_study(study_name=f"flowyard-sweep-{sweep_id}", storage=storage)
    drawn = study.ask()  # and never submitted
    storage.engine.dispose()
    workspace.start()
    sweep = _done(client, sweep_id)
    assert sweep.job.status == JobStatus.COMPLETED, sweep.job.events[-1].reason
    assert sorted(t.number for t in sweep.trials) == list(range(12))
    assert drawn.number in {t.number for t in sweep.trials}
    assert all(t.status == JobStatus.COMPLETED for t in sweep.trials)
    runs = MlflowClient().search_runs(
        [sweep.job.experiment_id], f"tags.mlflow.parentRunId = '{sweep_id}'"
    )
    assert len(runs) == 12
    log = client.read_log(sweep_id, 0)[0].decode()
    assert log.count("queued:") == 12


def test_canceling_a_sweep_cancels_its_trials(client: Client) -> None:
    spec = {
        "search_space": {"x": {"type": "uniform", "low": -5, "high": 5}},
        "objective": {"metric": "loss"},
        "limits": {"max_trials": 50, "max_concurrent_trials": 3},
    }
    sweep_id = _sweep(spec, wait=False, steps=100, step_s=0.5)
    deadline = time.monotonic() + 60
    while sum(t.status == JobStatus.RUNNING for t in client.get_sweep(sweep_id).trials) < 1:
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.2)
    client.cancel_job(sweep_id)
    sweep = _done(client, sweep_id, timeout=90)
    assert sweep.job.status == JobStatus.CANCELED
    assert len(sweep.trials) == 3  # none drawn after the cancel
    assert all(t.status == JobStatus.CANCELED for t in sweep.trials)
    assert all(t.reason and "the sweep was canceled" in t.reason for t in sweep.trials)
    assert MlflowClient().get_run(sweep_id).info.status == "KILLED"
    # A sweep is not re-run as one run.
    with pytest.raises(InvalidRequestError, match="is a sweep, whose trials are the runs"):
        client.request("POST", f"/jobs/{sweep_id}/rerun", json={})


def test_a_sweep_stops_at_its_timeout(client: Client) -> None:
    spec = {
        "search_space": {"x": {"type": "uniform", "low": -5, "high": 5}},
        "objective": {"metric": "loss"},
        "limits": {"max_trials": 20, "max_concurrent_trials": 2, "timeout": 6},
    }
    sweep_id = _sweep(spec, wait=False, steps=100, step_s=0.5)
    sweep = _done(client, sweep_id, timeout=90)
    # No trial finished in time: nothing to call the best, so the sweep failed, saying why.
    assert sweep.job.status == JobStatus.FAILED
    assert sweep.job.error is not None and sweep.job.error.message is not None
    assert "the sweep's limits.timeout of 6 s passed" in sweep.job.error.message
    assert 1 <= len(sweep.trials) <= 2
    assert all(t.status == JobStatus.CANCELED for t in sweep.trials)
    assert all(t.reason and "limits.timeout of 6 s passed" in t.reason for t in sweep.trials)


def test_a_sweep_fails_after_max_failed_trials(client: Client) -> None:
    spec = {
        "search_space": {"x": {"type": "choice", "values": [10, 11, 12, 13, 14, 15]}},
        "sampling": "grid",
        "objective": {"metric": "loss"},
        "limits": {"max_concurrent_trials": 1, "max_failed_trials": 2},
    }
    sweep_id = _sweep(spec, wait=False, fail_if_over=1)
    sweep = _done(client, sweep_id)
    assert sweep.job.status == JobStatus.FAILED
    assert len(sweep.trials) == 2 and all(t.state == "fail" for t in sweep.trials)
    assert sweep.job.error is not None and sweep.job.error.message is not None
    assert "2 trials failed" in sweep.job.error.message


def test_what_cannot_sweep_is_refused_before_anything_is_created(client: Client) -> None:
    from mlflow.exceptions import ExecutionException

    before = len(client.list_jobs(limit=1000))
    cases = [
        ({"COMPUTE": "local"}, {}, "set backend_config COMPUTE"),
        ({}, {"search_space": {"steps": {"type": "uniform", "low": 1, "high": 9}}}, "is an int"),
        ({}, {"search_space": {"x": {"type": "choice", "values": ["a"]}}}, "offers 'a'"),
        ({}, {"limits": {}}, "limits.max_trials is needed"),
    ]
    base = {
        "search_space": {"x": {"type": "uniform", "low": 0, "high": 1}},
        "objective": {"metric": "loss"},
        "limits": {"max_trials": 2},
    }
    for config, spec, words in cases:
        with pytest.raises(ExecutionException, match=words):
            mlflow.projects.run(
                str(PROJECT),
                backend="flowyard",
                backend_config={
                    "COMPUTE": COMPUTE,
                    "USE_CONDA": False,
                    "SWEEP": {**base, **spec},
                    **config,
                },
            )
    assert len(client.list_jobs(limit=1000)) == before


def test_the_cli_runs_a_spec_file_waits_for_the_best_and_shows_the_trials(
    workspace: Server, tmp_path: Path
) -> None:
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        f"project: {PROJECT}\n"
        "experiment: cli-sweep\n"
        f"compute: {COMPUTE}\n"
        "parameters: {y: -1, steps: 2}\n"
        "backend_config: {USE_CONDA: false}\n"
        "search_space:\n"
        "  x: {type: quniform, low: 0, high: 3, q: 1}\n"
        "sampling: grid\n"
        "objective: {metric: loss, goal: minimize}\n"
    )
    done = run_cli("sweep", str(spec), cwd=workspace.cwd, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "completed: 4 of 4 trials, 4 completed." in done.stdout
    assert "Best: trial " in done.stdout and "loss=0 with x=2.0." in done.stdout
    sweep_id = done.stdout.split("Sweep ", 1)[1].split()[0]
    shown = run_cli("sweep", "show", sweep_id, cwd=workspace.cwd)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"Sweep {sweep_id} completed: 4 of 4 trials")
    header = lines.index("\t".join(TRIAL_HEADER))
    rows = [line.split("\t") for line in lines[header + 1 :]]
    # Best first; the two trials of equal loss by their number.
    assert rows[0][5] == "x=2.0" and rows[-1][5] == "x=0.0"
    assert [float(r[3]) for r in rows] == [0.0, 1.0, 1.0, 4.0]
    assert all(r[2] == "completed" for r in rows)
    # A mistake in the spec is one line, before anything is uploaded.
    spec.write_text(f"project: {PROJECT}\ncompute: {COMPUTE}\nsearch_space: {{}}\n")
    refused = run_cli("sweep", str(spec), cwd=workspace.cwd)
    assert refused.returncode == 1
    assert "needs a search_space naming at least one parameter" in refused.stderr


@pytest.mark.slow
@pytest.mark.postgres
def test_a_second_replica_takes_a_sweep_over_on_postgres(
    postgres_empty_db: str, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL database; the one driving a sweep is killed (-9): the other
    takes the sweep over once its lease runs out, and it ends with exactly max_trials trials."""
    import sqlalchemy as sa

    from flowyard.credentials import save_token

    # The killed server's runners retry it with growing pauses until it is back (their only
    # address), so their trials' heartbeats may pause for longer than ENV's 30 s on a loaded
    # machine: this test is about the sweep's lease, not about lost runners.
    env = {
        **FAST, **ENV, "FLOWYARD_HEARTBEAT_TIMEOUT_S": "120",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }  # fmt: skip
    args = ["--db-url", postgres_empty_db, "--artifacts", str(tmp_path / "artifacts")]
    first, second = (Server(args=args, cwd=tmp_path, env=env).start() for _ in range(2))
    assert first.token
    save_token(second.url, first.token)
    try:
        created = run_cli(
            "compute", "create", "shared", "--type", "process", "--max-concurrent-jobs", "3",
            cwd=tmp_path, env={"FLOWYARD_WORKSPACE_URL": first.url},
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        mlflow.set_tracking_uri(first.url)
        mlflow.set_experiment("replicas")
        run = mlflow.projects.run(
            str(PROJECT),
            parameters={"steps": 2, "step_s": 0.3},
            backend="flowyard",
            synchronous=False,
            backend_config={
                "COMPUTE": "shared",
                "USE_CONDA": False,
                "SWEEP": {
                    "search_space": {"x": {"type": "uniform", "low": -3, "high": 3}},
                    "sampling": {"algorithm": "random", "seed": 9},
                    "objective": {"metric": "loss"},
                    "limits": {"max_trials": 9, "max_concurrent_trials": 3},
                },
            },
        )
        sweep_id = run.run_id
        engine = sa.create_engine(postgres_empty_db)
        deadline = time.monotonic() + 60
        owner = None
        while owner is None:
            assert time.monotonic() < deadline, "no server took the sweep"
            with engine.connect() as conn:
                owner = conn.execute(
                    sa.text("SELECT lease_owner FROM flowyard_sweeps WHERE id = :id"),
                    {"id": sweep_id},
                ).scalar()
            time.sleep(0.2)
        engine.dispose()
        pids = {server.proc.pid: server for server in (first, second) if server.proc}
        holder = pids.get(int(owner.split(":")[1]), first)
        other = second if holder is first else first
        holder.kill()
        with Client(other.url, token=first.token) as client:
            deadline = time.monotonic() + 60
            while "took over from" not in client.read_log(sweep_id, 0)[0].decode():
                assert time.monotonic() < deadline, "the other server never took the sweep over"
                time.sleep(0.3)
            holder.start()  # its runners report to it again
            sweep = _done(client, sweep_id)
        assert sweep.job.status == JobStatus.COMPLETED, sweep.job.events[-1].reason
        assert sorted(t.number for t in sweep.trials) == list(range(9))
        assert all(t.status == JobStatus.COMPLETED for t in sweep.trials), [
            (t.number, t.status, t.reason) for t in sweep.trials
        ]
    finally:
        mlflow.set_tracking_uri(None)
        for server in (first, second):
            server.stop()
