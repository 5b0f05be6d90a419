"""Which queued jobs a dispatcher claims (``dispatch.claim``): only as many as the compute has free
slots, highest priority first, then oldest, each once; on a real (SQLite) workspace database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.jobspec import EnvironmentSpec, JobOptions
from flowyard.server.db.engine import prepare_database
from flowyard.server.db.models import Compute, Job, JobEvent, Snapshot
from flowyard.server.services.dispatch import claim
from flowyard.status import JobStatus

START = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    db = Path(tmp_path_factory.mktemp("claims")) / "workspace.db"
    url, _ = prepare_database(f"sqlite:///{db}", "claims")
    engine = sa.create_engine(url)
    with Session(engine) as session:
        session.add(Snapshot(id="0" * 64, file_count=0, total_bytes=0, manifest=[]))
        session.commit()
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: sa.Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
        for table in (JobEvent, Job, Compute):
            session.execute(sa.delete(table))
        session.commit()


def add_compute(session: Session, name: str, slots: int) -> None:
    session.add(
        Compute(
            name=name, type="process", max_concurrent_jobs=slots, settings={},
            created_at=START, updated_at=START,
        )
    )  # fmt: skip


def add_job(
    session: Session, job_id: str, *, compute: str = "c", priority: int = 0, age: int = 0,
    status: JobStatus = JobStatus.QUEUED,
) -> None:  # fmt: skip
    session.add(
        Job(
            id=job_id, experiment_id="0", snapshot_id="0" * 64, project_uri=".",
            entry_point="main", parameters={}, environment=EnvironmentSpec(), options=JobOptions(),
            compute=compute,
            status=status, priority=priority, cancel_requested=False, user="u", attempt=1,
            submitted_at=START - timedelta(seconds=age), log_size=0,
        )
    )  # fmt: skip


def test_priority_first_then_oldest_then_id(session: Session) -> None:
    add_compute(session, "c", 10)
    add_job(session, "low-old", priority=0, age=100)
    add_job(session, "high-new", priority=5, age=1)
    add_job(session, "high-old", priority=5, age=50)
    add_job(session, "b-same", priority=1, age=10)
    add_job(session, "a-same", priority=1, age=10)
    add_job(session, "negative", priority=-3, age=1000)
    session.commit()
    taken = [job.id for job in claim(session, "c")]
    assert taken == ["high-old", "high-new", "a-same", "b-same", "low-old", "negative"]


def test_only_free_slots_are_filled_and_each_job_once(session: Session) -> None:
    add_compute(session, "c", 3)
    add_job(session, "running", status=JobStatus.RUNNING)
    add_job(session, "finalizing", status=JobStatus.FINALIZING)
    add_job(session, "done", status=JobStatus.COMPLETED)
    for i in range(5):
        add_job(session, f"q{i}", age=10 - i)
    session.commit()
    first = claim(session, "c")
    assert [job.id for job in first] == ["q0"]  # 3 slots, 2 busy (completed frees its slot)
    assert claim(session, "c") == []  # full now
    job = first[0]
    assert job.status == JobStatus.PREPARING and job.heartbeat_at is not None
    event = session.scalars(sa.select(JobEvent).where(JobEvent.job_id == "q0")).one()
    assert (event.from_status, event.to_status) == ("queued", "preparing")
    assert "slot 3 of 3" in event.reason


def test_the_limit_and_other_computes_are_respected(session: Session) -> None:
    add_compute(session, "c", 100)
    add_compute(session, "other", 100)
    for i in range(4):
        add_job(session, f"c{i}", age=10 - i)
        add_job(session, f"o{i}", compute="other")
    session.commit()
    assert [job.id for job in claim(session, "c", limit=3)] == ["c0", "c1", "c2"]
    assert [job.id for job in claim(session, "c", limit=3)] == ["c3"]
    assert claim(session, "unknown") == []
    left = session.scalars(sa.select(Job.id).where(Job.status == JobStatus.QUEUED)).all()
    assert sorted(left) == ["o0", "o1", "o2", "o3"]
