"""The chaos suite's kills: a replica killed (SIGKILL) while submissions are in flight, or while a
job is finalizing, and started again on the same database. No submission is lost or doubled, no
run is left without its job, and the job that was finalizing ends once, as earned."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from flowyard.client import Client
from flowyard.schemas import JobOut, JobStatus, JobSubmit
from flowyard.snapshot import build_manifest, upload
from tests.chaos.conftest import REPAIR_AFTER_S, pg_replica
from tests.factories import create_compute, final_job, make_project
from tests.servers import Server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SUBMITTERS = 4
EACH = 6


def _restart(server: Server) -> Server:
    server.kill()
    time.sleep(0.5)
    return server.start()


def test_a_replica_killed_mid_submission_loses_and_doubles_nothing(
    postgres_empty_db: str, tmp_path: Path
) -> None:
    server = pg_replica(postgres_empty_db, tmp_path / "ws")
    try:
        mlflow.set_tracking_uri(server.url)
        tracking = MlflowClient()
        experiment = tracking.create_experiment("killed-mid-submission")
        project = make_project(tmp_path / "p", "print('hi')\n")
        with Client(server.url) as client:
            snapshot = upload(client, build_manifest(project)).id
        answers: list[JobOut] = []
        failures: list[BaseException] = []

        def submitter() -> None:
            with Client(server.url) as own:
                for _ in range(EACH):
                    request = JobSubmit(
                        experiment_id=experiment,
                        snapshot_id=snapshot,
                        project_uri=".",
                        entry_point="main",
                        user="someone",
                        submission_key=uuid.uuid4().hex,
                    )
                    try:
                        answers.append(own.submit_job(request))
                    except BaseException as e:
                        failures.append(e)

        threads = [threading.Thread(target=submitter) for _ in range(SUBMITTERS)]
        for thread in threads:
            thread.start()
        while len(answers) < SUBMITTERS:  # submissions are flowing: kill it among them
            time.sleep(0.01)
        server = _restart(server)
        for thread in threads:
            thread.join(timeout=300)
        assert not failures, failures
        assert len(answers) == SUBMITTERS * EACH
        ids = {a.id for a in answers}
        assert len(ids) == SUBMITTERS * EACH, "a submission made two jobs"
        with Client(server.url) as client:
            listed = {j.id for j in client.list_jobs(experiment_id=experiment, limit=1000)}
        assert listed == ids
        # Any run a killed submission made without its job is settled within the repair delay.
        deadline = time.monotonic() + REPAIR_AFTER_S * 10
        while True:
            active = tracking.search_runs([experiment], run_view_type=ViewType.ACTIVE_ONLY)
            if {r.info.run_id for r in active} == ids:
                break
            assert time.monotonic() < deadline, f"{len(active)} active runs for {len(ids)} jobs"
            time.sleep(0.5)
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()


# A job that ends with 40 MB of outputs to upload: its finalizing lasts long enough to be hit.
OUTPUTS = """
import os
os.makedirs("outputs", exist_ok=True)
for i in range(4):
    with open(f"outputs/part-{i}.bin", "wb") as f:
        f.write(os.urandom(10 * 1024 * 1024))
print("outputs written", flush=True)
"""


def test_a_replica_killed_while_a_job_finalizes_ends_it_once(
    postgres_empty_db: str, tmp_path: Path
) -> None:
    server = pg_replica(postgres_empty_db, tmp_path / "ws")
    try:
        create_compute(server, "pool")
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("killed-while-finalizing")
        run = mlflow.projects.run(
            str(make_project(tmp_path / "p", OUTPUTS)),
            backend="flowyard",
            synchronous=False,
            backend_config={"COMPUTE": "pool", "USE_CONDA": False, "STREAM_OUTPUT": False},
        )
        with Client(server.url) as client:
            deadline = time.monotonic() + 120
            while (status := client.get_job(run.run_id).status) != JobStatus.FINALIZING:
                assert not status.is_final, f"the job ended {status} before it was caught"
                assert time.monotonic() < deadline, "the job never finalized"
                time.sleep(0.02)
        server = _restart(server)
        with Client(server.url) as client:
            job = final_job(client, run.run_id)
            log = client.read_log(run.run_id)[0].decode()
        assert (job.status, job.attempt) == (JobStatus.COMPLETED, 1), job.events
        assert log.count("outputs written") == 1
        tracking = MlflowClient()
        # Killed between the job's end and its run's, the run is ended by the repair.
        deadline = time.monotonic() + REPAIR_AFTER_S * 10
        while (run_status := tracking.get_run(run.run_id).info.status) != "FINISHED":
            assert time.monotonic() < deadline, f"the job's run is still {run_status}"
            time.sleep(0.5)
        outputs = {f.path for f in tracking.list_artifacts(run.run_id, "outputs")}
        assert outputs == {f"outputs/part-{i}.bin" for i in range(4)}
    finally:
        mlflow.set_tracking_uri(None)
        server.stop()
