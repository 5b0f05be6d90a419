"""Bringing a database up to date: fresh, older, and with several servers starting at once."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.jobspec import EntryPointSpec, EnvironmentSpec, JobOptions, ParameterSpec, Resources
from flowyard.server.db.engine import (
    VERSION_TABLE,
    make_engine,
    migrate,
    parse_db_url,
    prepare_database,
)
from flowyard.server.db.models import Job

HEAD = "0012"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _scalar_rows(url: str, sql: str) -> list[object]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text(sql)).scalars())
    finally:
        engine.dispose()


def test_fresh_sqlite_gets_mlflow_and_flowyard_tables_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    _, name = prepare_database(url, "fresh")
    assert name == "fresh"
    tables = _tables(url)
    assert {"runs", "metrics", "alembic_version", "flowyard_settings", VERSION_TABLE} <= tables
    assert _scalar_rows(url, f"SELECT version_num FROM {VERSION_TABLE}") == [HEAD]
    # Optuna's tables for sweeps' studies, beside MLflow's, whose version table it left alone.
    assert {"studies", "trials", "trial_intermediate_values", "version_info"} <= tables
    assert len(_scalar_rows(url, "SELECT version_num FROM alembic_version")) == 1
    assert _scalar_rows(url, "PRAGMA journal_mode") == ["wal"]
    # Migration 0010's index on MLflow's runs, for an experiment's runs newest first, and
    # 0012's on its metrics, for a run's values logged since a moment.
    engine = sa.create_engine(url)
    try:
        indexes = {i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("runs")}
        on_metrics = {
            i["name"]: i["column_names"] for i in sa.inspect(engine).get_indexes("metrics")
        }
    finally:
        engine.dispose()
    assert indexes["ix_flowyard_runs_experiment_started"] == [
        "experiment_id",
        "lifecycle_stage",
        "start_time",
    ]
    assert on_metrics["ix_flowyard_metrics_run_time"] == ["run_uuid", "timestamp"]


def test_the_first_server_names_the_workspace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'named.db'}"
    prepare_database(url, "first")
    assert prepare_database(url, "second")[1] == "first"


def test_an_older_database_is_upgraded(tmp_path: Path) -> None:
    """A database made by stock MLflow (no Flowyard tables yet) gains them, keeping its runs."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    url = f"sqlite:///{tmp_path / 'mlflow-made.db'}"
    store = SqlAlchemyStore(url, str(tmp_path / "artifacts"))
    experiment_id = store.create_experiment("kept")
    store.engine.dispose()
    assert "flowyard_settings" not in _tables(url)

    prepare_database(url, "upgraded")
    assert {"flowyard_settings", VERSION_TABLE} <= _tables(url)
    assert _scalar_rows(url, f"SELECT version_num FROM {VERSION_TABLE}") == [HEAD]
    assert _scalar_rows(
        url, f"SELECT name FROM experiments WHERE experiment_id = {experiment_id}"
    ) == ["kept"]


_PREPARE = """
import sys
from flowyard.server.db.engine import prepare_database
print(prepare_database(sys.argv[1], sys.argv[2])[1])
"""


@pytest.mark.postgres
def test_two_servers_starting_at_once_on_fresh_postgres(postgres_empty_db: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PREPARE, postgres_empty_db, f"s{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    names = {out.strip() for out, _ in outputs}
    assert len(names) == 1  # both agree on the one name the first of them recorded
    assert _scalar_rows(postgres_empty_db, f"SELECT version_num FROM {VERSION_TABLE}") == [HEAD]
    assert len(_scalar_rows(postgres_empty_db, "SELECT version_num FROM alembic_version")) == 1
    assert len(_scalar_rows(postgres_empty_db, "SELECT key FROM flowyard_settings")) == 1


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        request.applymarker(pytest.mark.postgres)
        url: str = request.getfixturevalue("postgres_empty_db")
        return url
    return f"sqlite:///{tmp_path / 'old.db'}"


_SPEC = {
    "name": "main",
    "parameters": {"alpha": {"type": "float", "default": 0.5}},
    "command": "python main.py --alpha {alpha}",
}
# Jobs as versions before 0006 stored them: sealed secrets, artifact URI and MAX_RETRIES in the
# options; the oldest without a command or entry point; values JobOptions now refuses.
_OLD_JOBS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "full": (
        {
            "timeout": 60,
            "env_vars": {"PLAIN": "yes"},
            "max_retries": 2,
            "resources": {"num_cpus": 2},
            "command": "python main.py --alpha 0.5",
            "entry_point_spec": _SPEC,
            "artifact_uri": "mlflow-artifacts:/1/full/artifacts",
            "secret_env": {"API_KEY": "gAAAA-sealed"},
        },
        {"manager": "uv", "source": "python_env.yaml", "python": "3.11", "dependencies": ["six"]},
    ),
    "oldest": ({"timeout": None, "env_vars": {}}, {"manager": "local"}),
    "refused-now": (
        {"timeout": 0, "env_vars": {"A=B": "1", "OK": "1"}, "resources": {"num_gpus": -1}},
        {"manager": "conda"},
    ),
}


def test_jobs_stored_before_0006_read_with_their_secrets_out_of_their_options(
    empty_db: str,
) -> None:
    engine = make_engine(parse_db_url(empty_db))
    old = sa.table(
        "flowyard_jobs",
        *(sa.column(c) for c in ("id", "experiment_id", "snapshot_id", "project_uri")),
        *(sa.column(c) for c in ("entry_point", "compute", "status", "priority", "user")),
        *(sa.column(c) for c in ("cancel_requested", "attempt", "submitted_at", "log_size")),
        *(sa.column(c, sa.JSON) for c in ("parameters", "environment", "options")),
    )
    try:
        migrate(engine, "0005")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO flowyard_snapshots (id, file_count, total_bytes, manifest, "
                    "created_at) VALUES (:id, 0, 0, '[]', :at)"
                ),
                {"id": "0" * 64, "at": datetime.now(UTC)},
            )
            conn.execute(
                old.insert(),
                [
                    {
                        "id": job_id,
                        "experiment_id": "0",
                        "snapshot_id": "0" * 64,
                        "project_uri": ".",
                        "entry_point": "main",
                        "compute": "cpu",
                        "status": "completed",
                        "priority": 0,
                        "user": "u",
                        "cancel_requested": False,
                        "attempt": 1,
                        "submitted_at": datetime.now(UTC),
                        "log_size": 0,
                        "parameters": {},
                        "environment": environment,
                        "options": options,
                    }
                    for job_id, (options, environment) in _OLD_JOBS.items()
                ],
            )
        migrate(engine)
        with Session(engine) as session:
            full = session.get(Job, "full")
            oldest = session.get(Job, "oldest")
            refused_now = session.get(Job, "refused-now")
            assert full is not None and oldest is not None and refused_now is not None
            assert full.options == JobOptions(
                timeout=60.0,
                env_vars={"PLAIN": "yes"},
                resources=Resources(num_cpus=2.0),
                command="python main.py --alpha 0.5",
                entry_point_spec=EntryPointSpec(
                    "main",
                    "python main.py --alpha {alpha}",
                    {"alpha": ParameterSpec("float", 0.5)},
                ),
            )
            assert full.secret_env == {"API_KEY": "gAAAA-sealed"}
            assert full.artifact_uri == "mlflow-artifacts:/1/full/artifacts"
            assert full.max_retries == 2
            assert full.environment.builds and full.environment.dependencies == ("six",)
            assert (oldest.options, oldest.environment) == (JobOptions(), EnvironmentSpec())
            assert (oldest.secret_env, oldest.artifact_uri, oldest.max_retries) == ({}, None, None)
            # TIMEOUT 0 ran without a limit; a runner ran an unknown manager in its own Python.
            assert refused_now.options == JobOptions(env_vars={"OK": "1"})
            assert refused_now.environment == EnvironmentSpec()
        with engine.connect() as conn:
            stored = conn.execute(sa.select(old.c.options).where(old.c.id == "full")).scalar_one()
        assert set(stored) == {"timeout", "env_vars", "resources", "command", "entry_point_spec"}
    finally:
        engine.dispose()


def test_snapshots_stored_before_0008_have_their_blob_references(empty_db: str) -> None:
    """0008 reads each snapshot's manifest into the references the garbage collection counts,
    and marks what was stored as used when it was created."""
    from flowyard.server.db.models import Blob, Snapshot, SnapshotBlob

    engine = make_engine(parse_db_url(empty_db))
    a, b, c = ("a" * 64, "b" * 64, "c" * 64)
    manifests = {
        "1" * 64: [
            {"path": "x", "digest": a},
            {"path": "y", "digest": b},
            {"path": "z", "digest": a},
        ],
        "2" * 64: [{"path": "x", "digest": c}],
        "3" * 64: [],
    }
    created = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    try:
        migrate(engine, "0006")
        with engine.begin() as conn:
            for sid, manifest in manifests.items():
                conn.execute(
                    sa.text(
                        "INSERT INTO flowyard_snapshots (id, file_count, total_bytes, manifest, "
                        "created_at) VALUES (:id, 0, 0, :manifest, :at)"
                    ).bindparams(sa.bindparam("manifest", type_=sa.JSON)),
                    {"id": sid, "manifest": manifest, "at": created},
                )
            conn.execute(
                sa.text(
                    "INSERT INTO flowyard_blobs (digest, size, created_at) VALUES (:d, 1, :at)"
                ),
                [{"d": d, "at": created} for d in (a, b, c)],
            )
        migrate(engine)
        with Session(engine) as session:
            refs = {(r.snapshot_id, r.digest) for r in session.scalars(sa.select(SnapshotBlob))}
            assert refs == {("1" * 64, a), ("1" * 64, b), ("2" * 64, c)}
            assert {s.used_at for s in session.scalars(sa.select(Snapshot))} == {created}
            assert {s.used_at for s in session.scalars(sa.select(Blob))} == {created}
    finally:
        engine.dispose()


def test_log_chunks_stored_before_0011_read_as_stdout(empty_db: str) -> None:
    """0011 adds which bytes of a chunk stderr wrote; chunks stored before hold none, and the
    log reads as it did, new appends with their ranges after them."""
    from flowyard.server.services import jobs

    engine = make_engine(parse_db_url(empty_db))
    old = sa.table(
        "flowyard_jobs",
        *(sa.column(c) for c in ("id", "experiment_id", "snapshot_id", "project_uri")),
        *(sa.column(c) for c in ("entry_point", "compute", "status", "priority", "user")),
        *(sa.column(c) for c in ("cancel_requested", "attempt", "submitted_at", "log_size")),
        *(sa.column(c, sa.JSON) for c in ("parameters", "environment", "options")),
    )
    now = datetime.now(UTC)
    try:
        migrate(engine, "0010")
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO flowyard_snapshots (id, file_count, total_bytes, manifest, "
                    "created_at, used_at) VALUES (:id, 0, 0, '[]', :at, :at)"
                ),
                {"id": "0" * 64, "at": now},
            )
            conn.execute(
                old.insert(),
                {
                    "id": "logged",
                    "experiment_id": "0",
                    "snapshot_id": "0" * 64,
                    "project_uri": ".",
                    "entry_point": "main",
                    "compute": "cpu",
                    "status": "running",
                    "priority": 0,
                    "user": "u",
                    "cancel_requested": False,
                    "attempt": 1,
                    "submitted_at": now,
                    "log_size": 12,
                    "parameters": {},
                    "environment": {"manager": "local"},
                    "options": {"timeout": None, "env_vars": {}},
                },
            )
            conn.execute(
                sa.text(
                    'INSERT INTO flowyard_log_chunks (job_id, "offset", data, at) '
                    "VALUES ('logged', 0, :data, :at)"
                ),
                {"data": b"old output\n\n", "at": now},
            )
        migrate(engine)
        with Session(engine) as session:
            assert jobs.read_log_marked(session, "logged") == (b"old output\n\n", [])
            jobs.append_log(session, "logged", 12, b"out\nerr\n", stderr=[(4, 8)])
            assert jobs.read_log_marked(session, "logged") == (
                b"old output\n\nout\nerr\n",
                [(16, 20)],
            )
            assert jobs.read_log_marked(session, "logged", 17, 2) == (b"rr", [(17, 19)])
    finally:
        engine.dispose()
