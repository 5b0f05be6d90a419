"""Pruning a runner host's blob cache: the blobs used longest ago go first, down to the bound,
and never one used in the last minutes."""

from __future__ import annotations

import os
from pathlib import Path

from flowyard import caches

NOW = 1_000_000_000.0


def _cache(folder: Path, ages: dict[str, tuple[int, float]]) -> Path:
    """Blobs named as given, each of (size, seconds since its last use)."""
    folder.mkdir()
    for name, (size, age) in ages.items():
        path = folder / name
        path.write_bytes(b"x" * size)
        os.utime(path, (NOW - age, 0))
    return folder


def test_the_least_recently_used_go_first_down_to_the_bound(tmp_path: Path) -> None:
    hour = 3600.0
    folder = _cache(
        tmp_path / "blobs",
        {"old": (400, 30 * hour), "older": (300, 40 * hour), "newer": (200, 2 * hour)},
    )
    dry = caches.prune_blob_cache(600, folder, dry_run=True, now=NOW)
    assert (dry.count, dry.bytes) == (1, 300)
    assert len(list(folder.iterdir())) == 3
    done = caches.prune_blob_cache(600, folder, now=NOW)
    assert (done.count, done.bytes) == (1, 300)
    assert sorted(p.name for p in folder.iterdir()) == ["newer", "old"]
    done = caches.prune_blob_cache(0, folder, now=NOW)
    assert (done.count, done.bytes) == (2, 600)
    assert list(folder.iterdir()) == []


def test_a_blob_used_lately_is_kept_past_the_bound(tmp_path: Path) -> None:
    folder = _cache(
        tmp_path / "blobs",
        {"stale": (100, caches.RECENT_USE_S * 2), "fresh": (100, caches.RECENT_USE_S / 2)},
    )
    done = caches.prune_blob_cache(0, folder, now=NOW)
    assert (done.count, done.bytes) == (1, 100)
    assert [p.name for p in folder.iterdir()] == ["fresh"]


def test_no_cache_prunes_nothing(tmp_path: Path) -> None:
    assert caches.prune_blob_cache(0, tmp_path / "none", now=NOW) == caches.Pruned()
