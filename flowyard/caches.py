"""What a machine that runs jobs keeps, and pruning it: job folders (``<cache>/jobs/<id>``) and
the blob cache (``<cache>/blobs``) that snapshots are materialized from.

Plain file operations with no workspace in sight: the runner prunes its host's blob cache after
each materialization, and the server prunes its own host's (where its `process` runners run),
together with the folders of jobs it knows have ended.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from flowyard import paths

# A cache blob used this recently is never pruned: a runner that has just checked it is cached
# may be about to copy it.
RECENT_USE_S = 600.0


@dataclass(frozen=True)
class Pruned:
    """How many entries and bytes a pruning removed (or, on a dry run, would remove)."""

    count: int = 0
    bytes: int = 0


def folder_size(folder: Path) -> int:
    """The bytes of the files under ``folder``, links not followed."""
    size = 0
    for root, _dirs, names in os.walk(folder):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return size


def job_folders() -> Iterable[tuple[str, Path]]:
    """This machine's job folders, by job id."""
    root = paths.cache_dir() / "jobs"
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            yield entry.name, Path(entry.path)


def remove_job_folders(folders: Iterable[Path], *, dry_run: bool = False) -> Pruned:
    count = size = 0
    for folder in folders:
        size += folder_size(folder)
        count += 1
        if not dry_run:
            shutil.rmtree(folder, ignore_errors=True)
    return Pruned(count, size)


def blob_cache() -> Path:
    """Where materialized blobs are cached on this machine."""
    return paths.cache_dir() / "blobs"


def prune_blob_cache(
    max_bytes: int,
    folder: Path | None = None,
    *,
    dry_run: bool = False,
    now: float | None = None,
) -> Pruned:
    """Remove the blobs used longest ago until the cache holds at most ``max_bytes``; never one
    used in the last :data:`RECENT_USE_S` seconds (so the cache may stay above its bound while
    jobs use all of it). Every job's files are copies, so no job loses a file to this."""
    folder = folder or blob_cache()
    now = time.time() if now is None else now
    entries: list[tuple[float, int, str]] = []
    total = 0
    try:
        scanned = list(os.scandir(folder))
    except FileNotFoundError:
        return Pruned()
    for entry in scanned:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        total += st.st_size
        entries.append((st.st_atime, st.st_size, entry.path))
    count = freed = 0
    for used, size, path in sorted(entries):
        if total - freed <= max_bytes or now - used < RECENT_USE_S:
            break
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue  # another runner pruned it
        count += 1
        freed += size
    return Pruned(count, freed)
