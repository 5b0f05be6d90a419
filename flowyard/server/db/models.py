"""SQLAlchemy models of Flowyard's own tables. MLflow's tables belong to MLflow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol, Self

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from flowyard.jobspec import EnvironmentSpec, JobOptions
from flowyard.sweepspec import SweepSpec

# Every table is prefixed so it never meets one of MLflow's, and constraint names are fixed so
# Alembic migrations read the same on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Setting(Base):
    """Workspace-wide settings, such as its name, shared by every server replica."""

    __tablename__ = "flowyard_settings"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def utc_now() -> datetime:
    """Now, as every timestamp column stores it."""
    return datetime.now(UTC)


class _UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored timezone-aware in UTC (PostgreSQL: timestamptz), and read back aware
    from SQLite too, which keeps them as text without the zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


_Time = _UTCDateTime()


class _JsonValue(Protocol):
    def to_json(self) -> dict[str, Any]: ...

    @classmethod
    def from_json(cls, data: Any) -> Self: ...


class _Stored(TypeDecorator[Any]):
    """A :mod:`flowyard.jobspec` value, stored as its JSON and read back as the value."""

    impl = JSON
    cache_ok = True

    def __init__(self, kind: type[_JsonValue]) -> None:
        super().__init__()
        self.kind = kind

    def process_bind_param(self, value: _JsonValue | None, dialect: Any) -> Any:
        return None if value is None else value.to_json()

    def process_result_value(self, value: Any, dialect: Any) -> _JsonValue | None:
        return None if value is None else self.kind.from_json(value)


class Blob(Base):
    """A file's content in the artifact store, by its sha256: the index of what is uploaded."""

    __tablename__ = "flowyard_blobs"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    # When a submission last asked for it, uploaded it or named it in a snapshot: an
    # unreferenced blob is collected only once this is older than the collector's grace period.
    used_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)


class Snapshot(Base):
    """The exact code a job ran: a manifest of paths to blobs; its id is the manifest's sha256."""

    __tablename__ = "flowyard_snapshots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    file_count: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    # [{"path": "src/train.py", "digest": "<sha256>", "size": 123, "executable": false}, ...]
    manifest: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    # When it was last created or submitted: a snapshot no job refers to is collected only once
    # this is older than the collector's grace period.
    used_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)


class SnapshotBlob(Base):
    """A snapshot's reference to a blob (one row per distinct blob): the references the garbage
    collection counts, where the manifest's JSON cannot be searched."""

    __tablename__ = "flowyard_snapshot_blobs"

    snapshot_id: Mapped[str] = mapped_column(ForeignKey("flowyard_snapshots.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class JobKind:
    """What a job is: a run of the project (which takes a slot on its compute), or a sweep (run
    by the workspace's sweep controller, taking no slot; its trials are runs)."""

    RUN = "run"
    SWEEP = "sweep"


class Job(Base):
    """A submitted run of an MLflow project; its id is its MLflow run id."""

    __tablename__ = "flowyard_jobs"
    # One job per trial of a sweep, whoever submits it (two controllers, a retried tick).
    __table_args__ = (UniqueConstraint("sweep_id", "trial_number"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    experiment_id: Mapped[str] = mapped_column(String(32), index=True)
    snapshot_id: Mapped[str] = mapped_column(ForeignKey("flowyard_snapshots.id"), index=True)
    project_uri: Mapped[str] = mapped_column(Text)
    entry_point: Mapped[str] = mapped_column(String(255))
    parameters: Mapped[dict[str, str]] = mapped_column(JSON)
    environment: Mapped[EnvironmentSpec] = mapped_column(_Stored(EnvironmentSpec))
    options: Mapped[JobOptions] = mapped_column(_Stored(JobOptions))
    compute: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # MAX_RETRIES; None: the compute's default.
    max_retries: Mapped[int | None] = mapped_column(Integer)
    # The run's artifact root, where the runner uploads ./outputs and the workspace the log.
    artifact_uri: Mapped[str | None] = mapped_column(Text)
    # Secret ENV_VARS, each sealed with the workspace key; handed only to the job's own runner.
    secret_env: Mapped[dict[str, str]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    user: Mapped[str] = mapped_column(String(255))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    submitted_at: Mapped[datetime] = mapped_column(_Time, default=utc_now, index=True)
    started_at: Mapped[datetime | None] = mapped_column(_Time)
    ended_at: Mapped[datetime | None] = mapped_column(_Time)
    heartbeat_at: Mapped[datetime | None] = mapped_column(_Time)
    # Who runs it: {"host": ..., "pid": ...} for a runner; the compute's own id once submitted.
    runner: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    external_id: Mapped[str | None] = mapped_column(String(255))
    exit_code: Mapped[int | None] = mapped_column(Integer)
    # {"type", "message", "traceback", "exit_code", "signal"} when it failed.
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    log_size: Mapped[int] = mapped_column(BigInteger, default=0)
    # Why a queued job still waits ("cpu-cluster: 2 of 2 slots busy, 3 ahead"), kept current by
    # the dispatcher without adding an event each time it is recomputed.
    waiting_reason: Mapped[str | None] = mapped_column(Text)
    # The client's key for this submission: the same key from the same user again (a retry of a
    # request whose answer was lost) gets this job back instead of a second one.
    submission_key: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default=JobKind.RUN, server_default=text("'run'"))
    # A trial's sweep (the sweep job's id) and its Optuna trial number.
    sweep_id: Mapped[str | None] = mapped_column(String(32), index=True)
    trial_number: Mapped[int | None] = mapped_column(Integer)
    # Why it was asked to stop, when not by its user (a sweep's early termination policy).
    cancel_reason: Mapped[str | None] = mapped_column(Text)

    events: Mapped[list[JobEvent]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )


class Sweep(Base):
    """A sweep's spec and controller state; its job (same id) has its status, log and run."""

    __tablename__ = "flowyard_sweeps"

    id: Mapped[str] = mapped_column(ForeignKey("flowyard_jobs.id"), primary_key=True)
    spec: Mapped[SweepSpec] = mapped_column(_Stored(SweepSpec))
    # Its study in Optuna's tables.
    study_name: Mapped[str] = mapped_column(String(255))
    # The server process whose controller runs it, until when: another takes over after that.
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(_Time)
    best_trial_id: Mapped[str | None] = mapped_column(String(32))
    best_value: Mapped[float | None] = mapped_column(Float)
    # When the sweep and every trial of it had ended and Optuna had been told: nothing left to do.
    settled_at: Mapped[datetime | None] = mapped_column(_Time)


class JobEvent(Base):
    """One status transition of a job, with why it happened."""

    __tablename__ = "flowyard_job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("flowyard_jobs.id"), index=True)
    at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")

    job: Mapped[Job] = relationship(back_populates="events")


class LogChunk(Base):
    """A piece of a job's log, addressed by its byte offset so a retried append is a no-op."""

    __tablename__ = "flowyard_log_chunks"

    job_id: Mapped[str] = mapped_column(ForeignKey("flowyard_jobs.id"), primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    # The [start, end) byte ranges of `data` the job's stderr wrote, relative to `offset`
    # (flowyard/log_ranges.py); NULL: none (and every chunk stored before 0011).
    stderr: Mapped[list[list[int]] | None] = mapped_column(JSON)


class Compute(Base):
    """A registered compute target that jobs name in COMPUTE."""

    __tablename__ = "flowyard_computes"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    type: Mapped[str] = mapped_column(String(16))
    # Ray: the cluster's dashboard URL (http://head:8265).
    address: Mapped[str | None] = mapped_column(Text)
    max_concurrent_jobs: Mapped[int] = mapped_column(Integer)
    # The workspace's URL as the compute's runners reach it (default: the server's own).
    workspace_url: Mapped[str | None] = mapped_column(Text)
    # Per-compute defaults: {"resources": {"num_cpus": 1, ...}, "max_retries": 0, ...}
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)


class Replica(Base):
    """A server process of this workspace, at the URL its runners reach it by, last seen when
    its background loop last wrote here."""

    __tablename__ = "flowyard_replicas"

    url: Mapped[str] = mapped_column(String(512), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)


class User(Base):
    """Someone who holds tokens; jobs record the name of the user who submitted them."""

    __tablename__ = "flowyard_users"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)

    tokens: Mapped[list[Token]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class Token(Base):
    """An API token: ``fy_<id>_<secret>``; only the secret's sha256 is kept."""

    __tablename__ = "flowyard_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    user: Mapped[str] = mapped_column(
        ForeignKey("flowyard_users.name", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(_Time, default=utc_now)
    expires_at: Mapped[datetime | None] = mapped_column(_Time)
    revoked_at: Mapped[datetime | None] = mapped_column(_Time)

    owner: Mapped[User] = relationship(back_populates="tokens")
