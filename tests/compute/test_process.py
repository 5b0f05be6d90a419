"""Queued jobs on a `process` compute: the registry, the dispatcher's limits and order, cancel,
lost runners and retries, and a server that crashes mid-run."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.compute.base import ExternalState
from flowyard.compute.process import ProcessTarget
from flowyard.errors import ConflictError, NotFoundError
from flowyard.schemas import ComputeType, JobStatus
from tests.factories import (
    EXAMPLE,
    event_at,
    final_job,
    hangs_on_first_attempt,
    make_project,
    waits_for_gate,
)
from tests.servers import Server, fast_workspace, run_cli


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("process-compute"))
    yield server
    server.stop()


def _compute(workspace: Server, name: str, *args: str) -> None:
    result = run_cli(
        "compute",
        "create",
        name,
        "--type",
        "process",
        *args,
        cwd=workspace.cwd,
        env={"FLOWYARD_WORKSPACE_URL": workspace.url},
    )
    assert result.returncode == 0, result.stderr


def _submit(project: Path, compute: str, **config: object) -> str:
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": compute, "USE_CONDA": False, "STREAM_OUTPUT": False, **config},
    )
    return str(run.run_id)


def test_the_remote_flow_on_a_process_compute(client: Client, workspace: Server) -> None:
    _compute(workspace, "cpu-cluster", "--max-concurrent-jobs", "2")
    run = mlflow.projects.run(
        str(EXAMPLE),
        parameters={"alpha": 0.3, "steps": 5},
        backend="flowyard",
        backend_config={"COMPUTE": "cpu-cluster", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    job = client.get_job(run.run_id)
    assert job.status == JobStatus.COMPLETED
    assert job.compute == "cpu-cluster"
    assert [e.to_status for e in job.events] == [
        JobStatus.QUEUED,
        JobStatus.PREPARING,
        JobStatus.RUNNING,
        JobStatus.FINALIZING,
        JobStatus.COMPLETED,
    ]
    assert "dispatched to cpu-cluster" in job.events[1].reason
    tracked = MlflowClient().get_run(run.run_id)
    assert tracked.data.params["alpha"] == "0.3"
    assert tracked.data.tags["flowyard.compute"] == "cpu-cluster"
    assert len(MlflowClient().get_metric_history(run.run_id, "rmse")) == 5
    names = {a.path for a in MlflowClient().list_artifacts(run.run_id, "outputs")}
    assert "outputs/model.pkl" in names
    log = Path(MlflowClient().download_artifacts(run.run_id, "logs/std_log.txt")).read_text()
    assert "ElasticNet(alpha=0.3" in log


def test_an_unknown_compute_lists_the_known_ones_before_creating_anything(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    _compute(workspace, "known-one")
    jobs_before = len(client.list_jobs(limit=1000))
    with pytest.raises(
        NotFoundError,
        match=r"Unknown compute 'gpu-cluster'; this workspace "
        r"knows: local, .*known-one",
    ):
        _submit(make_project(tmp_path / "p", "print(1)\n"), "gpu-cluster")
    assert len(client.list_jobs(limit=1000)) == jobs_before


def test_the_registry_lists_local_first_and_keeps_it_as_it_is(
    client: Client, workspace: Server
) -> None:
    created = client.create_compute("listed", ComputeType.PROCESS, max_concurrent_jobs=3)
    assert (created.type, created.max_concurrent_jobs) == (ComputeType.PROCESS, 3)
    listed = client.list_computes()
    assert (listed[0].name, listed[0].type, listed[0].healthy) == ("local", "local", True)
    assert "listed" in [c.name for c in listed[1:]]
    local = client.get_compute("local", health=True)
    assert (local.type, local.healthy, local.active_jobs) == (ComputeType.LOCAL, True, 0)
    assert client.update_compute("listed", max_concurrent_jobs=5).max_concurrent_jobs == 5
    with pytest.raises(ConflictError, match="'local' is built in"):
        client.update_compute("local", max_concurrent_jobs=5)
    with pytest.raises(ConflictError, match="'local' is built in"):
        client.delete_compute("local")
    shown = run_cli(
        "compute", "list", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert shown.returncode == 0, shown.stderr
    rows = [line.split("\t") for line in shown.stdout.splitlines()]
    assert rows[1][:3] == ["local", "local", ""]
    assert ["listed", "process", "", "0 of 5", "0"] in rows
    client.delete_compute("listed")
    assert "listed" not in [c.name for c in client.list_computes()]


def test_ten_jobs_on_two_slots_never_run_more_than_two_at_once(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    _compute(workspace, "two-slots", "--max-concurrent-jobs", "2")
    project = make_project(tmp_path / "p", "import time\ntime.sleep(1)\nprint('done')\n")
    ids = [_submit(project, "two-slots") for _ in range(10)]
    waiting = client.get_job(ids[-1])
    assert waiting.status == JobStatus.QUEUED
    assert waiting.waiting_reason is not None
    assert "two-slots: 2 of 2 slots busy" in waiting.waiting_reason
    jobs = [final_job(client, i) for i in ids]
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    spans = [(event_at(j, JobStatus.PREPARING), j.ended_at) for j in jobs]
    for start, _ in spans:
        overlapping = sum(1 for s, e in spans if e is not None and s <= start < e)
        assert overlapping <= 2
    # Submission order: each job was dispatched no earlier than the one submitted before it.
    dispatched = [event_at(j, JobStatus.PREPARING) for j in jobs]
    assert dispatched == sorted(dispatched)


def test_priority_goes_first_and_a_queued_job_cancels_at_once(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    _compute(workspace, "one-slot", "--max-concurrent-jobs", "1")
    slow = make_project(tmp_path / "slow", "import time\ntime.sleep(3)\n")
    quick = make_project(tmp_path / "quick", "print('quick')\n")
    first = _submit(slow, "one-slot")
    low = _submit(quick, "one-slot")
    high = _submit(quick, "one-slot", PRIORITY=5)
    doomed = _submit(quick, "one-slot")
    canceled = client.cancel_job(doomed)
    assert canceled.status == JobStatus.CANCELED
    assert MlflowClient().get_run(doomed).info.status == "KILLED"
    jobs = {i: final_job(client, i) for i in (first, low, high)}
    assert event_at(jobs[high], JobStatus.PREPARING) < event_at(jobs[low], JobStatus.PREPARING)


def _runner_pid(
    client: Client, run_id: str, started: Path | None = None, timeout: float = 60
) -> int:
    """The runner's pid once the job runs (and, given ``started``, once its entry point has
    created that file: a runner killed before its entry point starts proves nothing). In a
    sandbox it is the sandbox's first process; the runner's process group is bubblewrap's."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(run_id)
        ready = started is None or started.exists()
        if job.status == JobStatus.RUNNING and job.external_id and ready:
            return int(job.external_id.split(":")[1])
        time.sleep(0.1)
    raise AssertionError(f"job {run_id} never started running")


def test_a_killed_runner_fails_the_job_and_is_retried(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    _compute(workspace, "flaky", "--max-concurrent-jobs", "2")
    marker = tmp_path / "attempts"
    project = hangs_on_first_attempt(tmp_path / "p", marker)
    retried = _submit(project, "flaky", MAX_RETRIES=1)
    os.killpg(os.getpgid(_runner_pid(client, retried, marker)), signal.SIGKILL)
    job = final_job(client, retried)
    assert job.status == JobStatus.COMPLETED, job.events
    assert job.attempt == 2
    statuses = [e.to_status for e in job.events]
    assert statuses.count(JobStatus.QUEUED) == 2
    requeue = next(e for e in job.events[1:] if e.to_status == JobStatus.QUEUED)
    assert "runner" in requeue.reason and "retrying (attempt 2 of 2)" in requeue.reason
    log = client.read_log(retried)[0].decode()
    assert "retrying (attempt 2 of 2)" in log and "second attempt done" in log

    marker.unlink()
    no_retry = _submit(project, "flaky")
    started = time.monotonic()
    os.killpg(os.getpgid(_runner_pid(client, no_retry, marker)), signal.SIGKILL)
    job = final_job(client, no_retry)
    assert job.status == JobStatus.FAILED
    assert time.monotonic() - started < 30
    assert job.error is not None and job.error.type == "RunnerLost"
    assert MlflowClient().get_run(no_retry).info.status == "FAILED"


def test_a_server_killed_mid_run_loses_nothing(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    """kill -9 the server while jobs run and log; restart it: the jobs finish, and their logs
    have every line once, in order."""
    _compute(workspace, "steady", "--max-concurrent-jobs", "2")
    project = make_project(
        tmp_path / "p",
        "import time\nfor i in range(60):\n    print(f'line {i}', flush=True)\n"
        "    time.sleep(0.1)\n",
    )
    ids = [_submit(project, "steady") for _ in range(2)]
    for run_id in ids:
        _runner_pid(client, run_id)
    time.sleep(1)
    workspace.kill()
    time.sleep(3)
    workspace.start()
    for run_id in ids:
        job = final_job(client, run_id)
        assert job.status == JobStatus.COMPLETED
        lines = [
            ln for ln in client.read_log(run_id)[0].decode().splitlines() if ln.startswith("line ")
        ]
        assert lines == [f"line {i}" for i in range(60)]


def test_a_cancel_through_the_compute_reaches_the_sandboxed_runner(
    client: Client, workspace: Server, tmp_path: Path
) -> None:
    """The reconciler's last resort (SIGTERM to the runner's process group) stops a runner in
    its sandbox, which stops its entry point; the compute then sees it gone."""
    _compute(workspace, "stoppable")
    gate = tmp_path / "gate"
    run_id = _submit(waits_for_gate(tmp_path / "p", gate), "stoppable")
    deadline = time.monotonic() + 60
    while b"waiting" not in client.read_log(run_id)[0]:
        assert time.monotonic() < deadline, "the job never reached its gate"
        time.sleep(0.1)
    external_id = client.get_job(run_id).external_id
    assert external_id is not None
    target = ProcessTarget("stoppable")
    assert target.poll(external_id) == ExternalState.RUNNING
    target.cancel(external_id)
    job = final_job(client, run_id)
    assert job.status == JobStatus.FAILED
    gate.touch()
    log = client.read_log(run_id)[0].decode()
    assert "runner received SIGTERM" in log and "through" not in log
    # The runner exits right after its report: on a loaded machine, a moment after.
    deadline = time.monotonic() + 30
    while target.poll(external_id) != ExternalState.GONE:
        assert time.monotonic() < deadline, "the runner outlived its report by 30 s"
        time.sleep(0.1)
