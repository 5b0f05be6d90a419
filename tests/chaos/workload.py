"""A workload of jobs whose right outcome is known in advance, submitted through MLflow's own
`mlflow.projects.run` as users do, and the check that every job earned exactly that: its status,
one attempt, every log line once, its MLflow run ended to match, and no run without a job."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities import ViewType

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import make_project
from tests.servers import Server

LINES = 30
SCRIPT = f"""
import sys, time
code = int(sys.argv[1])
for i in range({LINES}):
    print(f"line {{i}}", flush=True)
    time.sleep(0.1)
sys.exit(code)
"""
RUN_STATUS = {JobStatus.COMPLETED: "FINISHED", JobStatus.FAILED: "FAILED"}


def project(root: Path) -> Path:
    """A project whose `main` prints LINES numbered lines over about 3 s, then exits with the
    code it is given."""
    return make_project(
        root, SCRIPT, parameters="{code: {type: int, default: 0}}", command="python main.py {code}"
    )


@dataclass
class Workload:
    """Jobs submitted to one compute, each with the status its exit code earns."""

    server_url: str
    project: Path
    compute: str
    experiment: str
    expected: dict[str, JobStatus] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4))
    _pending: list[Future[None]] = field(default_factory=list)

    def submit(self, code: int, compute: str | None = None) -> None:
        """Submit one job in the background (it retries through an outage, as users' do), to
        the workload's compute or ``compute``."""
        self._pending.append(self._pool.submit(self._submit, code, compute or self.compute))

    def _submit(self, code: int, compute: str) -> None:
        run = mlflow.projects.run(
            str(self.project),
            parameters={"code": code},
            backend="flowyard",
            synchronous=False,
            experiment_id=self.experiment,
            backend_config={"COMPUTE": compute, "USE_CONDA": False, "STREAM_OUTPUT": False},
        )
        with self._lock:
            self.expected[run.run_id] = JobStatus.COMPLETED if code == 0 else JobStatus.FAILED

    def submitted(self) -> None:
        """Wait for every submission; each must have succeeded."""
        for future in self._pending:
            future.result(timeout=300)
        self._pending.clear()

    def start(self, client: Client, *codes: int) -> None:
        """Submit a job for each exit code, and wait until they are submitted and one runs."""
        for code in codes:
            self.submit(code)
        self.submitted()
        self.wait_running(client)

    def wait_running(self, client: Client, timeout: float = 120) -> None:
        """Until some job has logged a few lines."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                ids = list(self.expected)
            if any(b"line 3\n" in client.read_log(i)[0] for i in ids):
                return
            assert time.monotonic() < deadline, "no job started logging"
            time.sleep(0.2)

    def check(
        self,
        client: Client,
        tracking: MlflowClient,
        timeout: float = 300,
        also: Sequence[str] = (),
    ) -> None:
        """Every job ends as its entry point earned, on its first attempt, with every line once;
        its run ended to match; and the experiment holds no run but these jobs' and ``also``
        (jobs the test submitted and checks itself)."""
        self.submitted()
        deadline = time.monotonic() + timeout
        for run_id, status in self.expected.items():
            while not (job := client.get_job(run_id)).status.is_final:
                assert time.monotonic() < deadline, f"job {run_id} still {job.status}"
                time.sleep(0.3)
            assert (job.status, job.attempt) == (status, 1), (job.status, job.events)
            log = client.read_log(run_id)[0].decode().splitlines()
            lines = [ln for ln in log if ln.startswith("line ")]
            assert lines == [f"line {i}" for i in range(LINES)], log
            assert tracking.get_run(run_id).info.status == RUN_STATUS[status]
        runs = tracking.search_runs([self.experiment], run_view_type=ViewType.ACTIVE_ONLY)
        assert sorted(r.info.run_id for r in runs) == sorted([*self.expected, *also])


@contextmanager
def workload(server: Server, root: Path, compute: str) -> Iterator[tuple[Workload, Client]]:
    """A workload on ``server``'s ``compute`` in a new experiment, with MLflow pointed there."""
    mlflow.set_tracking_uri(server.url)
    try:
        experiment = MlflowClient().create_experiment(f"chaos-{root.name}")
        load = Workload(server.url, project(root / "project"), compute, experiment)
        with Client(server.url) as client:
            yield load, client
        load._pool.shutdown(wait=True)
    finally:
        mlflow.set_tracking_uri(None)
