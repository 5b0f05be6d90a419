"""Several server processes on one PostgreSQL database: every queued job starts exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.client import Client
from flowyard.credentials import save_token
from flowyard.jobspec import EnvironmentSpec, JobOptions
from flowyard.schemas import JobStatus
from flowyard.server.db.engine import prepare_database
from flowyard.server.db.models import Compute, Job, Snapshot
from tests.factories import (
    event_at,
    final_job,
    make_project,
    read_news_while_gate_opens,
    waits_for_gate,
)
from tests.servers import FAST, Server, run_cli

pytestmark = pytest.mark.postgres

_CLAIM_LOOP = """
import json, sys, time
import sqlalchemy as sa
from sqlalchemy.orm import Session
from flowyard.server.services.dispatch import claim
engine = sa.create_engine(sys.argv[1])
time.sleep(max(float(sys.argv[2]) - time.time(), 0))  # both start together
claimed, idle = [], 0
while idle < 20:
    with Session(engine, expire_on_commit=False) as session:
        got = claim(session, "shared", limit=5)
    claimed += [job.id for job in got]
    idle = 0 if got else idle + 1
    time.sleep(0.01)
print(json.dumps(claimed))
"""


def test_two_dispatchers_claim_200_jobs_each_exactly_once(postgres_empty_db: str) -> None:
    url, _ = prepare_database(postgres_empty_db, "dispatch")
    engine = sa.create_engine(url)
    start = datetime.now(UTC)
    with Session(engine) as session:
        session.add(
            Compute(
                name="shared",
                type="process",
                max_concurrent_jobs=1000,
                settings={},
                created_at=start,
                updated_at=start,
            )
        )
        session.add(Snapshot(id="0" * 64, file_count=0, total_bytes=0, manifest=[]))
        session.commit()
        for i in range(200):
            session.add(
                Job(
                    id=uuid.uuid4().hex,
                    experiment_id="0",
                    snapshot_id="0" * 64,
                    project_uri=".",
                    entry_point="main",
                    parameters={},
                    environment=EnvironmentSpec(),
                    options=JobOptions(),
                    compute="shared",
                    status=JobStatus.QUEUED,
                    priority=0,
                    cancel_requested=False,
                    user="t",
                    attempt=1,
                    submitted_at=start + timedelta(milliseconds=i),
                    log_size=0,
                )
            )
        session.commit()
    go = str(time.time() + 5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CLAIM_LOOP, url, go], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    claimed = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(claimed), "both dispatchers should have claimed some jobs"
    assert not set(claimed[0]) & set(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 200
    with Session(engine) as session:
        statuses = session.scalars(sa.select(Job.status)).all()
        assert set(statuses) == {JobStatus.PREPARING}
        events = session.execute(
            sa.text(
                "SELECT job_id, count(*) FROM flowyard_job_events WHERE to_status = 'preparing' "
                "GROUP BY job_id"
            )
        ).all()
        assert len(events) == 200 and {n for _, n in events} == {1}
    engine.dispose()


@pytest.fixture
def two_servers(postgres_empty_db: str, tmp_path: Path) -> Iterator[list[Server]]:
    env = {**FAST, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["--db-url", postgres_empty_db, "--artifacts", str(tmp_path / "artifacts")]
    servers = [Server(args=args, cwd=tmp_path, env=env).start() for _ in range(2)]
    # The first server made the database's owner token, saved for its own URL.
    assert servers[0].token and not servers[1].token
    save_token(servers[1].url, servers[0].token)
    yield servers
    for server in servers:
        server.stop()


def test_two_real_servers_run_each_job_once(two_servers: list[Server], tmp_path: Path) -> None:
    first, second = two_servers
    result = run_cli(
        "compute",
        "create",
        "shared",
        "--type",
        "process",
        "--max-concurrent-jobs",
        "3",
        cwd=tmp_path,
        env={"FLOWYARD_WORKSPACE_URL": first.url},
    )
    assert result.returncode == 0, result.stderr
    marker = tmp_path / "ran"
    marker.mkdir()
    project = make_project(
        tmp_path / "p",
        "import os, sys, time\n"
        f"open(os.path.join({str(marker)!r}, os.environ['MLFLOW_RUN_ID'] + '-' + "
        "str(time.time_ns())), 'w').close()\n",
    )
    ids = []
    for i in range(12):
        mlflow.set_tracking_uri((first if i % 2 else second).url)
        mlflow.set_experiment("shared-queue")
        ids.append(
            mlflow.projects.run(
                str(project),
                backend="flowyard",
                synchronous=False,
                backend_config={"COMPUTE": "shared", "USE_CONDA": False},
            ).run_id
        )
    mlflow.set_tracking_uri(None)
    client = Client(first.url)
    jobs = [final_job(client, i) for i in ids]
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    runs = sorted(p.name.split("-")[0] for p in marker.iterdir())
    assert runs == sorted(ids)  # each entry point ran exactly once
    spans = [(event_at(j, JobStatus.PREPARING), j.ended_at) for j in jobs]
    for start, _ in spans:
        assert sum(1 for s, e in spans if e is not None and s <= start < e) <= 3


def test_a_waiting_log_read_hears_of_changes_made_through_another_server(
    two_servers: list[Server], tmp_path: Path
) -> None:
    """The runner reports to one server; a follower waits on the other, which re-reads the
    database, since no change made through the first reaches its process."""
    reporting, following = two_servers
    gate = tmp_path / "gate"
    project = waits_for_gate(tmp_path / "gated", gate)
    mlflow.set_tracking_uri(reporting.url)
    mlflow.set_experiment("two-servers-wait")
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    mlflow.set_tracking_uri(None)
    with Client(following.url) as client:
        log = read_news_while_gate_opens(client, run.run_id, gate)
        assert client.get_job(run.run_id).status == JobStatus.COMPLETED
    assert b"through" in log
