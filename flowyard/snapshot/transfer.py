"""Moving snapshots: uploading the blobs the workspace lacks, and materializing a snapshot from
a local blob cache.

Only blobs the workspace lacks are uploaded, and the snapshot's id is the sha256 of its manifest.
The runner materializes a snapshot from a cache of blobs into the job's folder: each file a
copy-on-write clone of its cache blob where the file system makes them (btrfs, XFS, bcachefs,
ZFS with block cloning), else a plain copy. Never a hard link: a job that rewrites one of its
project files in place must not change the cache, nor another job's copy.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from flowyard import defaults, disks
from flowyard.client import Client
from flowyard.errors import (
    BlobsMissingError,
    FlowyardError,
    InvalidRequestError,
    PayloadTooLargeError,
    StorageFullError,
    WorkspaceUnreachableError,
)
from flowyard.snapshot.manifest import DIGEST, FileEntry, Manifest, unsafe_path_reason
from flowyard.snapshot.progress import SnapshotProgress
from flowyard.snapshot.walk import build_manifest, cache_home

_CHUNK = 1 << 20
# A cache blob's mtime and mode: anything that writes into an entry moves the mtime, or a chmod
# changes the mode, and the entry then counts as corrupt. Its atime says when a job last used it
# (set on each use, whatever the mount's atime policy), for pruning the cache.
_BLOB_MTIME_NS = 0
_BLOB_MODE = 0o644
_DOWNLOAD_ATTEMPTS = 3


@dataclass(frozen=True)
class SnapshotResult:
    id: str
    file_count: int
    total_bytes: int
    uploaded_blobs: int
    uploaded_bytes: int


@dataclass(frozen=True)
class MaterializeResult:
    id: str
    file_count: int
    total_bytes: int
    downloaded_blobs: int
    downloaded_bytes: int


def upload(
    client: Client,
    source: Manifest | str | os.PathLike[str],
    *,
    max_mb: float = defaults.SNAPSHOT_MAX_MB,
    max_files: int = defaults.SNAPSHOT_MAX_FILES,
    workers: int = defaults.SNAPSHOT_UPLOAD_WORKERS,
    progress: SnapshotProgress | None = None,
) -> SnapshotResult:
    """Upload the blobs the workspace lacks, then create the snapshot (idempotent).

    ``source`` is a manifest from :func:`build_manifest`, or a project folder to build one from
    with the given limits. Small files travel in batches, a big one alone and streamed; a few
    requests run at once. ``progress`` hears of the upload as it goes.
    """
    manifest = (
        source
        if isinstance(source, Manifest)
        else build_manifest(source, max_mb=max_mb, max_files=max_files, progress=progress)
    )
    by_digest = {f.digest: f for f in manifest.files}
    todo = [by_digest[d] for d in client.missing_blobs(sorted(by_digest))]
    _send(client, manifest, todo, workers, progress)
    try:
        info = client.create_snapshot(manifest.files)
    except BlobsMissingError:
        # The workspace collected a blob it had said it held (the submission took longer than
        # its garbage collection's grace period): send what it lacks now, once more.
        again = [by_digest[d] for d in client.missing_blobs(sorted(by_digest))]
        _send(client, manifest, again, workers, None)
        todo += again
        info = client.create_snapshot(manifest.files)
    result = SnapshotResult(
        id=info.id,
        file_count=info.file_count,
        total_bytes=info.total_bytes,
        uploaded_blobs=len(todo),
        uploaded_bytes=sum(f.size for f in todo),
    )
    if progress is not None:
        progress.done(result)
    return result


def _send(
    client: Client,
    manifest: Manifest,
    todo: list[FileEntry],
    workers: int,
    progress: SnapshotProgress | None,
) -> None:
    if progress is not None:
        sent = {f.digest for f in todo}
        present = [f for f in manifest.files if f.digest not in sent]
        # Files of one content travel once: what is sent is counted in blobs.
        progress.uploading(
            len(todo), sum(f.size for f in todo), len(present), sum(f.size for f in present)
        )
    with ThreadPoolExecutor(workers) as pool:
        list(
            pool.map(
                lambda group: _upload_group(client, manifest.root, group, progress),
                _groups(todo),
            )
        )


def _groups(entries: list[FileEntry]) -> Iterator[list[FileEntry]]:
    """Each big file alone, biggest first (the longest requests start first), then the small
    ones in batches of about SNAPSHOT_BATCH_BYTES."""
    ordered = sorted(entries, key=lambda f: f.size, reverse=True)
    batch: list[FileEntry] = []
    batch_bytes = 0
    for entry in ordered:
        if entry.size > defaults.SNAPSHOT_BATCH_FILE_BYTES:
            yield [entry]
            continue
        if batch and (
            batch_bytes + entry.size > defaults.SNAPSHOT_BATCH_BYTES
            or len(batch) == defaults.SNAPSHOT_BATCH_FILES
        ):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(entry)
        batch_bytes += entry.size
    if batch:
        yield batch


def _upload_group(
    client: Client, root: Path, group: list[FileEntry], progress: SnapshotProgress | None
) -> None:
    if len(group) == 1 and group[0].size > defaults.SNAPSHOT_BATCH_FILE_BYTES:
        _upload_big(client, root, group[0], progress)
        return
    blobs = [(f.digest, _read_small(root, f)) for f in group]
    try:
        client.put_blobs(blobs)
    except PayloadTooLargeError:
        # A server started with a --max-body-mb below a batch's size takes its blobs one by one.
        for digest, content in blobs:
            client.put_blob(digest, [content])
    if progress is not None:
        progress.advance(sum(f.size for f in group), len(group))


def _read_small(root: Path, entry: FileEntry) -> bytes:
    path = root / entry.path
    try:
        content = path.read_bytes()
    except OSError as e:
        raise InvalidRequestError(f"Cannot read {path} ({e.strerror}); submit again.") from e
    if hashlib.sha256(content).hexdigest() != entry.digest:
        raise InvalidRequestError(f"{path} changed while it was uploaded; submit again.")
    return content


def _upload_big(
    client: Client, root: Path, entry: FileEntry, progress: SnapshotProgress | None
) -> None:
    path = root / entry.path
    hasher = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
                yield chunk
                if progress is not None:
                    progress.advance(len(chunk))  # asked for the next one: this one is sent
        if progress is not None:
            progress.advance(0, 1)

    try:
        client.put_blob(entry.digest, chunks())
    except OSError as e:
        raise InvalidRequestError(f"Cannot read {path} ({e.strerror}); submit again.") from e
    except InvalidRequestError as e:
        if hasher.hexdigest() != entry.digest:
            raise InvalidRequestError(f"{path} changed while it was uploaded; submit again.") from e
        raise


def materialize(
    client: Client,
    snapshot_id: str,
    dest_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workers: int = defaults.SNAPSHOT_UPLOAD_WORKERS,
) -> MaterializeResult:
    """Create a snapshot's files in ``dest_dir``, fetching only blobs missing from the cache.

    Blobs are cached in ``cache_dir`` (default ``<cache_home()>/blobs``). Each file is a clone
    (copy-on-write, where the file system can) or a copy of its blob, never a link: what a job
    writes to its files stays its own.
    """
    files = client.snapshot_files(snapshot_id)
    for f in files:
        reason = unsafe_path_reason(f.path)
        if reason or not DIGEST.fullmatch(f.digest):
            raise FlowyardError(f"Snapshot {snapshot_id} holds a bad file {f.path!r}; recreate it.")
    blobs = Path(cache_dir) if cache_dir is not None else cache_home() / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    sizes = {f.digest: f.size for f in files}
    stale = [d for d, size in sizes.items() if not _cached(blobs / d, size)]
    with _room(blobs, snapshot_id), ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda d: _download_blob(client, d, blobs), stale))
    with _room(Path(dest_dir), snapshot_id):
        return _place_all(client, snapshot_id, files, blobs, Path(dest_dir), sizes, stale)


@contextlib.contextmanager
def _room(folder: Path, snapshot_id: str) -> Iterator[None]:
    """A full file system under ``folder`` as one sentence that names it."""
    try:
        yield
    except OSError as e:
        if not disks.is_full(e):
            raise
        raise StorageFullError(
            disks.full_message(folder, f"snapshot {snapshot_id[:12]}'s files")
        ) from e


def _place_all(
    client: Client,
    snapshot_id: str,
    files: list[FileEntry],
    blobs: Path,
    dest: Path,
    sizes: dict[str, int],
    stale: list[str],
) -> MaterializeResult:
    now = time.time_ns()
    for digest in sizes:
        # Used now: the cache's pruning (flowyard.caches) keeps what was used last.
        with contextlib.suppress(FileNotFoundError):
            os.utime(blobs / digest, ns=(now, _BLOB_MTIME_NS))
    for f in files:
        try:
            _place(blobs / f.digest, dest / f.path, f.executable)
        except FileNotFoundError:
            # Pruned by another runner meanwhile (it prunes only what no job used for a while,
            # so this is rare): fetched again.
            _download_blob(client, f.digest, blobs)
            _place(blobs / f.digest, dest / f.path, f.executable)
    return MaterializeResult(
        id=snapshot_id,
        file_count=len(files),
        total_bytes=sum(f.size for f in files),
        downloaded_blobs=len(stale),
        downloaded_bytes=sum(sizes[d] for d in stale),
    )


def _cached(path: Path, size: int) -> bool:
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return (st.st_size, st.st_mtime_ns, stat.S_IMODE(st.st_mode)) == (
        size,
        _BLOB_MTIME_NS,
        _BLOB_MODE,
    )


def _download_blob(client: Client, digest: str, blobs: Path) -> None:
    for attempt in range(1, _DOWNLOAD_ATTEMPTS + 1):
        # A temp name and a rename: a killed download never leaves half a blob in the cache.
        fd, tmp = tempfile.mkstemp(dir=blobs, prefix=f".{digest}.", suffix=".part")
        try:
            hasher = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in client.read_blob(digest):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise FlowyardError(
                    f"The workspace at {client.url} sent content for blob {digest} that does not "
                    "match it; its artifact store may be damaged."
                )
            os.chmod(tmp, _BLOB_MODE)
            os.utime(tmp, ns=(_BLOB_MTIME_NS, _BLOB_MTIME_NS))
            os.replace(tmp, blobs / digest)
            return
        except WorkspaceUnreachableError as e:
            if attempt == _DOWNLOAD_ATTEMPTS:
                raise WorkspaceUnreachableError(
                    f"Downloading blob {digest} from {client.url} failed {attempt} times ({e}); "
                    "check that the workspace is reachable."
                ) from e
            time.sleep(attempt)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _place(blob: Path, target: Path, executable: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    _clone(blob, target)
    os.chmod(target, 0o755 if executable else 0o644)


# FICLONE from linux/fs.h: make one file share another's blocks, copy-on-write.
_FICLONE = 0x40049409


def _clone(source: Path, target: Path) -> None:
    """Copy ``source`` to the new file ``target``: a copy-on-write clone where the file system
    makes them (no byte is copied until one of the two is written), else a plain copy."""
    if sys.platform == "linux":
        import fcntl

        with source.open("rb") as src, target.open("xb") as dst:
            try:
                fcntl.ioctl(dst.fileno(), _FICLONE, src.fileno())
                return
            except OSError:
                pass  # a file system without clones, or across two: copy
    shutil.copyfile(source, target)
