"""What snapshotting tells whoever shows its progress (``flowyard.display.snapshot`` draws it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from flowyard.snapshot.transfer import SnapshotResult


class SnapshotProgress(Protocol):
    """Called by :func:`~flowyard.snapshot.build_manifest` and :func:`~flowyard.snapshot.upload`
    as they go. ``advance`` is called from their worker threads, so it must be thread-safe and
    quick: a slow one slows the snapshot."""

    def hashing(self, files: int, size: int, unchanged_files: int, unchanged_size: int) -> None:
        """Hashing starts: ``files`` of ``size`` bytes to hash, and the unchanged ones whose
        hash was kept from an earlier walk."""

    def uploading(self, files: int, size: int, present_files: int, present_size: int) -> None:
        """Uploading starts: ``files`` of ``size`` bytes to send, and the ones the workspace
        already holds."""

    def advance(self, size: int, files: int = 0) -> None:
        """``size`` more bytes, and ``files`` more files, hashed or sent."""

    def done(self, result: SnapshotResult) -> None:
        """The snapshot exists in the workspace."""
