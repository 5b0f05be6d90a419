"""Snapshots: the exact code of a project, as a manifest of content-addressed blobs.

``manifest`` holds the values (shared with the server), ``walk`` turns a project folder into a
manifest, ``transfer`` uploads and materializes snapshots, ``git`` reads a project's git tags.
"""

from flowyard.snapshot.git import git_info
from flowyard.snapshot.manifest import (
    DIGEST,
    MB,
    FileEntry,
    LeftOut,
    Manifest,
    shown_path,
    snapshot_id,
    unsafe_path_reason,
)
from flowyard.snapshot.transfer import MaterializeResult, SnapshotResult, materialize, upload
from flowyard.snapshot.walk import SnapshotTooLargeError, build_manifest, cache_home

__all__ = [
    "DIGEST",
    "MB",
    "FileEntry",
    "LeftOut",
    "Manifest",
    "MaterializeResult",
    "SnapshotResult",
    "SnapshotTooLargeError",
    "build_manifest",
    "cache_home",
    "git_info",
    "materialize",
    "shown_path",
    "snapshot_id",
    "unsafe_path_reason",
    "upload",
]
