"""Optuna's storage in the workspace's own database: the studies of sweeps, beside MLflow's tables
and Flowyard's, on SQLite and PostgreSQL alike.

Optuna keeps its schema version in a table named `alembic_version`, which in a workspace database
is MLflow's. Its own check would compare MLflow's revision with Optuna's and refuse, so it is
skipped: Optuna's tables are created once with the others (:func:`prepare`, under the schema
lock), and the `optuna` pin in pyproject.toml keeps to releases of one table schema (a new one is
a Flowyard migration's to bring). Optuna never writes to `alembic_version` here: it finds it
stamped already.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from optuna.storages import RDBStorage

_lock = threading.Lock()


def _quiet() -> None:
    import optuna

    # A trial's every report is news to Optuna's logger; the sweep's own log says what matters.
    optuna.logging.set_verbosity(logging.WARNING)


@functools.cache
def _storage(url: str) -> RDBStorage:
    from optuna.storages import RDBStorage

    _quiet()
    return RDBStorage(url, skip_compatibility_check=True)


def storage(url: str) -> RDBStorage:
    """The storage of every sweep's study in the database at ``url`` (one per process: each holds
    a connection pool)."""
    with _lock:
        return _storage(url)


def prepare(url: str) -> None:
    """Create Optuna's tables in the database at ``url`` where they are missing (the caller
    holds the schema lock)."""
    from optuna.storages import RDBStorage

    _quiet()
    made = RDBStorage(url, skip_compatibility_check=True)
    made.scoped_session.remove()
    made.engine.dispose()
