"""Garbage collection by reference count: snapshots no job refers to, blobs no snapshot refers
to, the folders of ended jobs on this host, and this host's blob cache past its size.

What a submission in flight relies on is kept by a grace period, not by a lock: every step of a
submission marks what it relies on as used (asking which blobs are missing marks the present
ones, an upload marks its blob, creating a snapshot marks it and records its references,
submitting marks the snapshot), and only what is unreferenced *and* unused for
``gc_grace_s`` is collected. A submission whose steps are further apart than the grace period
(an hour by default) may find a blob gone, and is told to upload it again.

Each row is deleted by a statement that checks again that it is unreferenced and unused, so
several server processes may collect at once, and a blob marked used between the collector's
look and its delete stays. A blob's row and file go in one transaction, which a submission
marking the blob waits for (and then uploads it again), so no upload writes a file the
collector then deletes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard import caches, defaults
from flowyard.env import builder, containers
from flowyard.schemas import JobStatus
from flowyard.server.db.models import Blob, Job, Snapshot, SnapshotBlob, utc_now
from flowyard.server.services import retention, snapshots
from flowyard.server.settings import ServerSettings

log = logging.getLogger(__name__)

# Rows read and deleted per statement: memory and transactions stay small at any scale.
_PAGE = 1000
# Blobs deleted per transaction, which holds the database's write lock on SQLite meanwhile.
_BLOB_PAGE = 200
_FINAL = tuple(s.value for s in JobStatus if s.is_final)


@dataclass(frozen=True)
class Collected:
    """What one collection freed (on a dry run: would free)."""

    dry_run: bool
    expired_jobs: int = 0
    expired_bytes: int = 0
    snapshots: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    job_folders: int = 0
    job_folder_bytes: int = 0
    cache_blobs: int = 0
    cache_bytes: int = 0
    environments: int = 0
    environment_bytes: int = 0
    job_images: int = 0


def collect(
    engine: Engine, settings: ServerSettings, *, dry_run: bool = False, now: datetime | None = None
) -> Collected:
    """One collection: the jobs retention policies let go, then snapshots, then blobs, then
    this host's job folders, blob cache and job environments."""
    now = now or utc_now()
    cutoff = now - timedelta(seconds=settings.gc_grace_s)
    with Session(engine) as session:
        expired = retention.apply(session, settings, dry_run=dry_run, now=now)
        snapshot_count = _snapshots(session, cutoff, dry_run)
        blob_count, blob_bytes = _blobs(session, settings.artifacts_destination, cutoff, dry_run)
        folders = _job_folders(session, dry_run)
    cache = caches.prune_blob_cache(int(settings.blob_cache_mb * 1e6), dry_run=dry_run)
    envs = builder.prune(
        defaults.ENV_UNUSED_DAYS, int(settings.env_cache_mb * 1e6), dry_run=dry_run
    )
    images = containers.prune_here(defaults.ENV_UNUSED_DAYS, dry_run=dry_run)
    return Collected(
        dry_run=dry_run,
        expired_jobs=len(expired.job_ids),
        expired_bytes=expired.artifact_bytes + expired.log_bytes,
        snapshots=snapshot_count,
        blobs=blob_count,
        blob_bytes=blob_bytes,
        job_folders=folders.count,
        job_folder_bytes=folders.bytes,
        cache_blobs=cache.count,
        cache_bytes=cache.bytes,
        environments=len(envs),
        environment_bytes=sum(size for _, size in envs),
        job_images=len(images),
    )


def _unused_snapshot(cutoff: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(Snapshot.used_at < cutoff, ~sa.exists().where(Job.snapshot_id == Snapshot.id))


def _snapshots(session: Session, cutoff: datetime, dry_run: bool) -> int:
    count, after = 0, ""
    while True:
        query = (
            sa.select(Snapshot.id)
            .where(Snapshot.id > after, _unused_snapshot(cutoff))
            .order_by(Snapshot.id)
            .limit(_PAGE)
        )
        if not dry_run:
            # PostgreSQL: a submission marking one of these used waits for this commit (and then
            # finds it gone, and creates it anew); SQLite serialises writers anyway.
            query = query.with_for_update(skip_locked=True)
        page = list(session.scalars(query))
        if not page:
            session.commit()
            return count
        after = page[-1]
        if dry_run:
            count += len(page)
            continue
        # Both deletes check the snapshot again, in one transaction (one writer at a time on
        # SQLite, the rows locked above on PostgreSQL): references go only with their snapshot.
        doomed = sa.select(Snapshot.id).where(Snapshot.id.in_(page), _unused_snapshot(cutoff))
        session.execute(
            sa.delete(SnapshotBlob)
            .where(SnapshotBlob.snapshot_id.in_(doomed))
            .execution_options(synchronize_session=False)
        )
        gone = session.execute(
            sa.delete(Snapshot)
            .where(Snapshot.id.in_(page), _unused_snapshot(cutoff))
            .execution_options(synchronize_session=False)
        )
        session.commit()
        count += getattr(gone, "rowcount", 0) or 0


def _unreferenced_blob(cutoff: datetime, dry_run: bool = False) -> sa.ColumnElement[bool]:
    """Unused since ``cutoff`` and held by no snapshot; on a dry run, by no snapshot that a
    real collection would keep (it would have collected the others first)."""
    held = sa.exists().where(SnapshotBlob.digest == Blob.digest)
    if dry_run:
        held = held.where(
            SnapshotBlob.snapshot_id == Snapshot.id, sa.not_(_unused_snapshot(cutoff))
        )
    return sa.and_(Blob.used_at < cutoff, ~held)


def _blobs(session: Session, destination: str, cutoff: datetime, dry_run: bool) -> tuple[int, int]:
    count = size = 0
    after = ""
    store = _BlobFiles(destination)
    while True:
        page = session.execute(
            sa.select(Blob.digest, Blob.size)
            .where(Blob.digest > after, _unreferenced_blob(cutoff, dry_run))
            .order_by(Blob.digest)
            .limit(_PAGE if dry_run else _BLOB_PAGE)
        ).all()
        if not page:
            return count, size
        after = page[-1][0]
        if dry_run:
            count += len(page)
            size += sum(s for _d, s in page)
            continue
        digests = [d for d, _s in page]
        # One transaction: the rows go, then their files, then the commit. Until it, a
        # submission marking one of these blobs waits (the deleted rows stay locked on
        # PostgreSQL; SQLite has one writer at a time), and then finds it gone and uploads it
        # again: no upload ever writes a file that this deletes.
        # Locked in digest order first, as submissions lock them: no deadlock between the two.
        session.execute(
            sa.select(Blob.digest)
            .where(Blob.digest.in_(digests), _unreferenced_blob(cutoff))
            .order_by(Blob.digest)
            .with_for_update()
        )
        session.execute(
            sa.delete(Blob)
            .where(Blob.digest.in_(digests), _unreferenced_blob(cutoff))
            .execution_options(synchronize_session=False)
        )
        kept = set(session.scalars(sa.select(Blob.digest).where(Blob.digest.in_(digests))))
        for digest, blob_size in page:
            if digest in kept:
                continue  # marked used since the look above
            store.remove(digest)
            count += 1
            size += blob_size
        session.commit()


class _BlobFiles:
    """The blobs' files in the artifact store."""

    def __init__(self, destination: str) -> None:
        from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

        self.repository: Any = snapshots.blob_repository(destination)
        self.local = (
            Path(self.repository.artifact_dir)
            if isinstance(self.repository, LocalArtifactRepository)
            else None
        )

    def remove(self, digest: str) -> None:
        try:
            if self.local is not None:
                (self.local / snapshots.blob_key(digest)).unlink(missing_ok=True)
            else:
                self.repository.delete_artifacts(snapshots.blob_key(digest))
        except Exception as e:  # its row goes all the same: a file left is only space
            log.warning("cannot delete blob %s from the artifact store: %s", digest, e)


def _job_folders(session: Session, dry_run: bool) -> caches.Pruned:
    """The folders on this host of jobs this workspace knows have ended."""
    found = dict(caches.job_folders())
    ended: list[Path] = []
    ids = sorted(found)
    for i in range(0, len(ids), _PAGE):
        chunk = ids[i : i + _PAGE]
        ended += [
            found[job_id]
            for job_id in session.scalars(
                sa.select(Job.id).where(Job.id.in_(chunk), Job.status.in_(_FINAL))
            )
        ]
    session.commit()
    return caches.remove_job_folders(ended, dry_run=dry_run)


class Collector:
    """The background thread that collects every ``gc_interval_s`` (the first time one interval
    after the server starts)."""

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gc", daemon=True)

    def start(self) -> None:
        if self.settings.gc_interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.gc_interval_s):
            try:
                done = collect(self.engine, self.settings)
                log.info("garbage collection: %s", done)
            except Exception:
                log.exception("garbage collection failed; trying again next interval")
