"""Moving snapshots: uploading the blobs the workspace lacks, and materializing a snapshot from
a local blob cache.

Only blobs the workspace lacks are uploaded, and the snapshot's id is the sha256 of its manifest.
The runner materializes a snapshot from a cache of blobs, hard-linked into the job's folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx

from flowyard import defaults
from flowyard.client import Client
from flowyard.errors import (
    FlowyardError,
    InvalidRequestError,
    WorkspaceUnreachableError,
    error_from_payload,
)
from flowyard.snapshot.manifest import DIGEST, FileEntry, Manifest, unsafe_path_reason
from flowyard.snapshot.walk import build_manifest, cache_home

_CHUNK = 1 << 20
# A cache blob's mtime and mode: a job writing into its hard-linked file moves the mtime, or a
# chmod changes the mode, and the entry then counts as corrupt.
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
) -> SnapshotResult:
    """Upload the blobs the workspace lacks, then create the snapshot (idempotent).

    ``source`` is a manifest from :func:`build_manifest`, or a project folder to build one from
    with the given limits.
    """
    manifest = (
        source
        if isinstance(source, Manifest)
        else build_manifest(source, max_mb=max_mb, max_files=max_files)
    )
    by_digest = {f.digest: f for f in manifest.files}
    missing = client.request("POST", "/blobs/missing", json={"digests": sorted(by_digest)})
    todo = [by_digest[d] for d in missing["missing"]]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda f: _upload_blob(client, manifest.root, f), todo))
    body = client.request("POST", "/snapshots", json={"files": manifest.to_json()})
    return SnapshotResult(
        id=str(body["id"]),
        file_count=int(body["file_count"]),
        total_bytes=int(body["total_bytes"]),
        uploaded_blobs=len(todo),
        uploaded_bytes=sum(f.size for f in todo),
    )


def _upload_blob(client: Client, root: Path, entry: FileEntry) -> None:
    path = root / entry.path
    hasher = hashlib.sha256()

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as file:
            while chunk := file.read(_CHUNK):
                hasher.update(chunk)
                yield chunk

    try:
        client.request("PUT", f"/blobs/{entry.digest}", content=chunks(), timeout=_blob_timeout())
    except OSError as e:
        raise InvalidRequestError(f"Cannot read {path} ({e.strerror}); submit again.") from e
    except InvalidRequestError as e:
        if hasher.hexdigest() != entry.digest:
            raise InvalidRequestError(f"{path} changed while it was uploaded; submit again.") from e
        raise


def _blob_timeout() -> httpx.Timeout:
    return httpx.Timeout(defaults.SNAPSHOT_BLOB_TIMEOUT_S, connect=defaults.CONNECT_TIMEOUT_S)


def materialize(
    client: Client,
    snapshot_id: str,
    dest_dir: str | os.PathLike[str],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    link: bool = True,
    workers: int = defaults.SNAPSHOT_UPLOAD_WORKERS,
) -> MaterializeResult:
    """Create a snapshot's files in ``dest_dir``, fetching only blobs missing from the cache.

    Blobs are cached in ``cache_dir`` (default ``<cache_home()>/blobs``). With ``link``, files
    are hard links to the cache where possible, so jobs sharing a file share its inode; writing
    to one marks the cache entry corrupt, and it is fetched again next time. Executable files
    are always copies, since a hard link shares the mode too.
    """
    info = client.request("GET", f"/snapshots/{snapshot_id}")
    files = [FileEntry.from_json(f) for f in info["files"]]
    for f in files:
        reason = unsafe_path_reason(f.path)
        if reason or not DIGEST.fullmatch(f.digest):
            raise FlowyardError(f"Snapshot {snapshot_id} holds a bad file {f.path!r}; recreate it.")
    blobs = Path(cache_dir) if cache_dir is not None else cache_home() / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    sizes = {f.digest: f.size for f in files}
    stale = [d for d, size in sizes.items() if not _cached(blobs / d, size)]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda d: _download_blob(client, d, blobs), stale))
    dest = Path(dest_dir)
    for f in files:
        _place(blobs / f.digest, dest / f.path, f.executable, link)
    return MaterializeResult(
        id=str(info["id"]),
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
            with (
                os.fdopen(fd, "wb") as out,
                client.http.stream("GET", f"/blobs/{digest}", timeout=_blob_timeout()) as r,
            ):
                if not r.is_success:
                    r.read()
                    _raise_for(client, r)
                for chunk in r.iter_bytes(_CHUNK):
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
        except httpx.TransportError as e:
            if attempt == _DOWNLOAD_ATTEMPTS:
                raise WorkspaceUnreachableError(
                    f"Downloading blob {digest} from {client.url} failed {attempt} times ({e}); "
                    "check that the workspace is reachable."
                ) from e
            time.sleep(attempt)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _raise_for(client: Client, response: httpx.Response) -> NoReturn:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error_code" in body and "message" in body:
        raise error_from_payload(body)
    raise FlowyardError(
        f"The workspace at {client.url} answered {response.status_code} to "
        f"{response.request.method} {response.request.url.path}."
    )


def _place(blob: Path, target: Path, executable: bool, link: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    if link and not executable:
        try:
            os.link(blob, target)
            return
        except OSError:
            pass  # another filesystem, too many links, or no hard links at all: copy
    shutil.copyfile(blob, target)
    os.chmod(target, 0o755 if executable else 0o644)
