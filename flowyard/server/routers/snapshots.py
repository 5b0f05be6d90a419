"""Snapshots and their content-addressed blobs."""

from __future__ import annotations

import mimetypes
import shutil
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from flowyard.schemas import (
    BlobBatchOut,
    BlobInfo,
    Digests,
    Missing,
    SnapshotCreate,
    SnapshotDetail,
    SnapshotFile,
    SnapshotInfo,
)
from flowyard.server.db.models import Snapshot
from flowyard.server.middleware.limits import MB
from flowyard.server.services import snapshots as service
from flowyard.server.state import DbSession, State
from flowyard.snapshot import FileEntry

router = APIRouter(tags=["snapshots"])
_SPOOL_BYTES = 1 << 20


@router.post("/blobs/missing")
def missing_blobs(body: Digests, session: DbSession) -> Missing:
    """Which of these blobs the workspace lacks, in the order asked."""
    return Missing(missing=service.missing_blobs(session, body.digests))


@router.put("/blobs/{digest}")
async def put_blob(digest: str, request: Request, session: DbSession, state: State) -> BlobInfo:
    """Store a blob's raw body; 400 unless its sha256 is ``digest``, 413 past the server's
    ``max_blob_mb``. Nothing is kept of a rejected upload."""
    service.check_digest(digest)
    upload = await run_in_threadpool(service.BlobUpload, digest)
    try:
        # Hashing and writing run off the event loop, a few received chunks at a time: a hop to
        # the thread pool per chunk of a few KB cost more than the hashing.
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= _SPOOL_BYTES:
                await run_in_threadpool(upload.write, bytes(pending))
                pending.clear()
        if pending:
            await run_in_threadpool(upload.write, bytes(pending))
        blob = await run_in_threadpool(upload.store, session, state.settings.artifacts_destination)
    finally:
        await run_in_threadpool(upload.discard)
    return BlobInfo(digest=blob.digest, size=blob.size)


@router.post("/blobs/batch")
async def put_blobs(request: Request, session: DbSession, state: State) -> BlobBatchOut:
    """Store many small blobs sent in one body (see :mod:`flowyard.snapshot.batch`), all or
    none: 400 if any blob's sha256 is not its digest, 413 for a blob over ``max_blob_mb`` or a
    body over ``max_body_mb``."""
    body = await request.body()
    settings = state.settings
    stored = await run_in_threadpool(
        service.store_batch,
        session,
        settings.artifacts_destination,
        body,
        int(settings.max_blob_mb * MB),
    )
    return BlobBatchOut(blobs=[BlobInfo(digest=d, size=size) for d, size in stored])


@router.get("/blobs/{digest}")
def get_blob(digest: str, session: DbSession, state: State) -> FileResponse:
    return _serve(service.open_blob(session, state.settings.artifacts_destination, digest))


@router.post("/snapshots")
def create_snapshot(body: SnapshotCreate, session: DbSession) -> SnapshotInfo:
    """Record a manifest whose blobs are all stored; the same files give the same id."""
    files = (FileEntry(f.path, f.digest, f.size, f.executable) for f in body.files)
    snapshot = service.create_snapshot(session, files)
    return SnapshotInfo(
        id=snapshot.id, file_count=snapshot.file_count, total_bytes=snapshot.total_bytes
    )


@router.get("/snapshots/{snapshot_id}")
def get_snapshot(snapshot_id: str, session: DbSession) -> SnapshotDetail:
    snapshot = service.get_snapshot(session, snapshot_id)
    return SnapshotDetail(
        id=snapshot.id,
        file_count=snapshot.file_count,
        total_bytes=snapshot.total_bytes,
        created_at=_utc(snapshot),
        files=[SnapshotFile.model_validate(f) for f in snapshot.manifest],
    )


@router.get("/snapshots/{snapshot_id}/files/{path:path}")
def get_snapshot_file(
    snapshot_id: str, path: str, session: DbSession, state: State
) -> FileResponse:
    entry = service.snapshot_file(service.get_snapshot(session, snapshot_id), path)
    blob = service.open_blob(session, state.settings.artifacts_destination, entry.digest)
    return _serve(blob, mimetypes.guess_type(path)[0])


def _serve(blob: service.BlobFile, media_type: str | None = None) -> FileResponse:
    cleanup = BackgroundTask(shutil.rmtree, blob.temp_dir, True) if blob.temp_dir else None
    return FileResponse(
        blob.path, media_type=media_type or "application/octet-stream", background=cleanup
    )


def _utc(snapshot: Snapshot) -> datetime:
    # SQLite hands timestamps back without their zone; they were stored in UTC.
    at = snapshot.created_at
    return at if at.tzinfo else at.replace(tzinfo=UTC)
