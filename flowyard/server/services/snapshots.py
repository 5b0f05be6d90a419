"""Blobs and snapshots: the content-addressed store of the code that jobs run.

A blob's bytes live in the workspace's artifact store under ``flowyard/blobs/``; its row in
``flowyard_blobs`` says it is complete, so the row is written only after the bytes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from flowyard import defaults
from flowyard.errors import BlobsMissingError, FlowyardError, InvalidRequestError, NotFoundError
from flowyard.server.db.models import Blob, Snapshot, SnapshotBlob, utc_now
from flowyard.snapshot import (
    DIGEST,
    FileEntry,
    batch,
    shown_path,
    snapshot_id,
    unsafe_path_reason,
)

BLOB_PREFIX = "flowyard/blobs"
# What open() leaves under the usual umask, as MLflow's local repository does for an artifact.
_BLOB_MODE = 0o644
# Keeps each IN (...) list far below SQLite's and PostgreSQL's bound-parameter limits.
_QUERY_CHUNK = 500


def check_digest(digest: str) -> str:
    if not DIGEST.fullmatch(digest):
        raise InvalidRequestError(
            f"{digest[:80]!r} is not a blob digest; a digest is the sha256 of the content as 64 "
            "lowercase hex characters."
        )
    return digest


@lru_cache(maxsize=4)
def blob_repository(destination: str) -> Any:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(destination.rstrip("/") + "/" + BLOB_PREFIX)


def blob_key(digest: str) -> str:
    # Two hex characters of fan-out keep a local folder's listing small.
    return f"{digest[:2]}/{digest}"


def missing_blobs(session: Session, digests: Sequence[str]) -> list[str]:
    """Which of these blobs are not stored. The stored ones are marked used: the submission
    asking will not upload them, so the collector must keep them for its grace period."""
    wanted = list(dict.fromkeys(check_digest(d) for d in digests))
    stored = claim_blobs(session, wanted)
    return [d for d in wanted if d not in stored]


def claim_blobs(session: Session, digests: Sequence[str]) -> dict[str, int]:
    """The sizes of the stored ones of these blobs, each marked used now, in one commit.

    Marked first, then read: a blob the collector deletes before the mark is not read (and so
    is uploaded again), and one it has not deleted by then it no longer may, since the mark
    makes it recent (the collector's delete checks again, and waits for the mark's row lock
    on PostgreSQL; SQLite has one writer at a time).
    """
    now = utc_now()
    ordered = sorted(set(digests))
    for i in range(0, len(ordered), _QUERY_CHUNK):
        chunk = ordered[i : i + _QUERY_CHUNK]
        # Rows locked in digest order, as the collector locks them (PostgreSQL; SQLite has one
        # writer at a time): two transactions never wait for each other in a circle.
        session.execute(
            sa.select(Blob.digest)
            .where(Blob.digest.in_(chunk))
            .order_by(Blob.digest)
            .with_for_update()
        )
        session.execute(
            sa.update(Blob)
            .where(Blob.digest.in_(chunk))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
    sizes = _stored_sizes(session, digests)
    session.commit()
    return sizes


def _stored_sizes(session: Session, digests: Sequence[str]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for i in range(0, len(digests), _QUERY_CHUNK):
        chunk = digests[i : i + _QUERY_CHUNK]
        rows = session.execute(sa.select(Blob.digest, Blob.size).where(Blob.digest.in_(chunk)))
        sizes.update({digest: size for digest, size in rows})
    return sizes


class BlobUpload:
    """A blob's body, spooled to a temp file while it is hashed and bounded."""

    def __init__(self, digest: str) -> None:
        self.digest = check_digest(digest)
        self.size = 0
        self._dir = Path(tempfile.mkdtemp(prefix="flowyard-blob-"))
        # MLflow's repositories name the stored file after the local one.
        self.path = self._dir / digest
        self._file = self.path.open("wb")
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self._hash.update(chunk)
        self._file.write(chunk)

    def discard(self) -> None:
        self._file.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def store(self, session: Session, destination: str) -> Blob:
        """Keep the blob if its content is what its digest says; idempotent."""
        self._file.close()
        _check_content(self.digest, self._hash.hexdigest())
        if not claim_blobs(session, [self.digest]):
            blob_repository(destination).log_artifact(str(self.path), self.digest[:2])
            _record(session, {self.digest: self.size})
        blob = session.get(Blob, self.digest)
        assert blob is not None
        return blob


def store_batch(
    session: Session, destination: str, body: bytes, max_blob_bytes: int
) -> list[tuple[str, int]]:
    """Keep every blob of a batch (see :mod:`flowyard.snapshot.batch`) and return their digests
    and sizes in the order sent; idempotent.

    All or nothing: every blob's content is checked against its digest before any is stored,
    so a batch with one bad blob stores none of them.
    """
    blobs = batch.decode(
        body, max_blob_bytes=max_blob_bytes, max_blobs=defaults.SNAPSHOT_BATCH_MAX_BLOBS
    )
    for digest, content in blobs:
        _check_content(check_digest(digest), hashlib.sha256(content).hexdigest())
    unique = dict(blobs)
    stored = claim_blobs(session, list(unique))
    new = {d: content for d, content in unique.items() if d not in stored}
    _write_blobs(blob_repository(destination), new)
    _record(session, {d: len(content) for d, content in new.items()})
    return [(digest, len(content)) for digest, content in blobs]


def _check_content(digest: str, actual: str) -> None:
    if actual != digest:
        raise InvalidRequestError(
            f"The content sent for blob {digest} has sha256 {actual}; a blob is stored only "
            "under the sha256 of its content."
        )


def _write_blobs(repository: Any, blobs: Mapping[str, memoryview]) -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    if not isinstance(repository, LocalArtifactRepository):
        write_blobs_through_files(repository, blobs)
        return
    # A local folder takes each blob straight from memory, as MLflow's own local repository
    # writes an artifact (a hidden temp file beside its place, renamed there, so no reader sees
    # half a blob) without its per-file path checks, which cost more than the write: the path
    # is made of hex digits only.
    root = Path(repository.artifact_dir)
    for digest, content in blobs.items():
        folder = root / digest[:2]
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{digest}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(content)
            os.chmod(tmp, _BLOB_MODE)
            os.replace(tmp, folder / digest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_blobs_through_files(repository: Any, blobs: Mapping[str, memoryview]) -> None:
    """Store blobs through any MLflow artifact repository, which uploads local files (only the
    local one takes a stream)."""
    with tempfile.TemporaryDirectory(prefix="flowyard-blobs-") as tmp:
        for digest, content in blobs.items():
            path = Path(tmp, blob_key(digest))
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(content)
        repository.log_artifacts(tmp)


def _record(session: Session, sizes: Mapping[str, int]) -> None:
    """Add the rows saying these blobs are stored, in one commit; a blob another request
    recorded meanwhile is left as it is."""
    if not sizes:
        return
    session.add_all(Blob(digest=d, size=size) for d, size in sizes.items())
    try:
        session.commit()
        return
    except IntegrityError:
        session.rollback()
    for digest, size in sizes.items():
        if session.get(Blob, digest) is not None:
            continue
        session.add(Blob(digest=digest, size=size))
        try:
            session.commit()
        except IntegrityError:
            session.rollback()


@dataclass(frozen=True)
class BlobFile:
    """A blob as a local file to serve; ``temp_dir`` is removed once it is served."""

    path: Path
    temp_dir: Path | None


def open_blob(session: Session, destination: str, digest: str) -> BlobFile:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    if session.get(Blob, check_digest(digest)) is None:
        raise NotFoundError(f"No blob {digest} in this workspace; upload it first.")
    repository = blob_repository(destination)
    try:
        if isinstance(repository, LocalArtifactRepository):
            return BlobFile(Path(repository.download_artifacts(blob_key(digest))), None)
        temp_dir = Path(tempfile.mkdtemp(prefix="flowyard-blob-"))
        try:
            return BlobFile(
                Path(repository.download_artifacts(blob_key(digest), str(temp_dir))), temp_dir
            )
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    except Exception as e:
        raise FlowyardError(
            f"Blob {digest} is recorded but the artifact store at {destination} cannot return it "
            f"({e}); check the store, then upload the snapshot again."
        ) from e


def create_snapshot(session: Session, files: Iterable[FileEntry]) -> Snapshot:
    """Record a manifest whose blobs are all stored; idempotent, the id being its sha256."""
    entries = sorted(files, key=lambda f: f.path)
    _check_manifest(entries)
    stored = claim_blobs(session, list(dict.fromkeys(f.digest for f in entries)))
    missing = sorted({f.path for f in entries if f.digest not in stored})
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise BlobsMissingError(
            f"The blobs of {len(missing)} files are not stored ({shown}); upload them before "
            "creating the snapshot."
        )
    for f in entries:
        if stored[f.digest] != f.size:
            raise InvalidRequestError(
                f"The manifest gives {f.path} {f.size} bytes but its blob {f.digest} has "
                f"{stored[f.digest]}; send the sizes of the blobs."
            )
    manifest = [f.to_json() for f in entries]
    sid = snapshot_id(manifest)
    if touch_snapshot(session, sid):
        snapshot = session.get(Snapshot, sid)
        if snapshot is not None:
            return snapshot
    snapshot = Snapshot(
        id=sid,
        file_count=len(entries),
        total_bytes=sum(f.size for f in entries),
        manifest=manifest,
    )
    session.add(snapshot)
    # Its references, with it in one commit: from then on its blobs are referenced.
    session.add_all(SnapshotBlob(snapshot_id=sid, digest=d) for d in sorted(stored))
    try:
        session.commit()
    except IntegrityError:  # another request created it meanwhile
        session.rollback()
        snapshot = session.get(Snapshot, sid)
        assert snapshot is not None
    return snapshot


def touch_snapshot(session: Session, sid: str) -> bool:
    """Mark a snapshot used now (about to be submitted); False where there is none."""
    moved = session.execute(
        sa.update(Snapshot)
        .where(Snapshot.id == sid)
        .values(used_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(moved, "rowcount", 1))


def _check_manifest(entries: Sequence[FileEntry]) -> None:
    paths: set[str] = set()
    for f in entries:
        reason = unsafe_path_reason(f.path)
        if reason:
            raise InvalidRequestError(
                f"The snapshot path {shown_path(f.path)} {reason}; a snapshot path is relative to "
                f"the project folder, '/'-separated, at most {defaults.SNAPSHOT_MAX_PATH_BYTES:,} "
                f"bytes with parts of at most {defaults.SNAPSHOT_MAX_NAME_BYTES}, and never '.' or "
                "'..'."
            )
        check_digest(f.digest)
        if f.size < 0:
            raise InvalidRequestError(
                f"The snapshot gives {f.path} a negative size; send the size of its blob."
            )
        if f.path in paths:
            raise InvalidRequestError(f"The snapshot lists {f.path} twice; list each file once.")
        paths.add(f.path)
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in paths:
                raise InvalidRequestError(
                    f"The snapshot lists {'/'.join(parts[:i])} as a file and as the folder of "
                    f"{path}; a path is either a file or a folder, so drop one of them."
                )


def get_snapshot(session: Session, sid: str) -> Snapshot:
    snapshot = session.get(Snapshot, sid)
    if snapshot is None:
        raise NotFoundError(f"No snapshot {sid} in this workspace; check the id.")
    return snapshot


def snapshot_file(snapshot: Snapshot, path: str) -> FileEntry:
    for f in snapshot.manifest:
        if f["path"] == path:
            return FileEntry.from_json(f)
    raise NotFoundError(f"Snapshot {snapshot.id} has no file {path}.")
