"""Storing snapshot blobs through MLflow's artifact repositories."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from flowyard.server.services.snapshots import write_blobs_through_files


def test_the_generic_path_stores_blobs_under_their_keys(tmp_path: Path) -> None:
    """What a non-local store (S3, GCS, ...) gets: files uploaded by log_artifacts, here into
    a local repository standing in for it."""
    contents = [os.urandom(1000), b"", os.urandom(10)]
    blobs = {hashlib.sha256(c).hexdigest(): memoryview(c) for c in contents}
    repository = get_artifact_repository(str(tmp_path / "store"))
    write_blobs_through_files(repository, blobs)
    stored = {p.name: p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()}
    assert stored == {d: bytes(c) for d, c in blobs.items()}
    for digest in blobs:
        assert (tmp_path / "store" / digest[:2] / digest).is_file()
