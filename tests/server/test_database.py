"""Bringing a database up to date: fresh, older, and with several servers starting at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from flowyard.server.db.engine import VERSION_TABLE, prepare_database

HEAD = "0005"


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
    assert _scalar_rows(url, "PRAGMA journal_mode") == ["wal"]


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
