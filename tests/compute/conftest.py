"""Fixtures for compute tests (their helpers: tests/servers.py, tests/factories.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from flowyard.client import Client
from tests.servers import Server


@pytest.fixture
def client(workspace: Server, tmp_path: Path) -> Iterator[Client]:
    """The MLflow client pointed at the module's ``workspace``, in a fresh experiment."""
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment(f"compute-{tmp_path.name}")
    yield Client(workspace.url)
    mlflow.set_tracking_uri(None)
