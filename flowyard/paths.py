"""Where Flowyard keeps things on a machine."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flowyard`` (default ``~/.cache/flowyard``): blobs, hashes, job folders."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowyard"


def job_dir(job_id: str) -> Path:
    """A job's folder on the machine that runs it: its project, log copy and runner output."""
    return cache_dir() / "jobs" / job_id


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/flowyard`` (default ``~/.config/flowyard``): credentials, secret key."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flowyard"
