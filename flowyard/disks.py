"""How full a file system is, and the sentence that says so when one is full."""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Usage:
    """A file system's size and free space (what an unprivileged writer may use), in bytes."""

    path: str
    total: int
    free: int

    @property
    def used_percent(self) -> float:
        return 100.0 * (self.total - self.free) / self.total if self.total else 0.0


def usage(path: str | os.PathLike[str]) -> Usage | None:
    """The usage of the file system holding ``path`` (or its nearest existing folder); None
    where it cannot be read."""
    found = Path(path)
    while not found.exists() and found != found.parent:
        found = found.parent
    try:
        total, _used, free = shutil.disk_usage(found)
    except OSError:
        return None
    return Usage(str(path), total, free)


def is_full(error: BaseException) -> bool:
    """Whether ``error`` says a file system has no room (ENOSPC) or its quota is spent."""
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def full_message(path: str | os.PathLike[str], what: str) -> str:
    """One sentence naming the full file system of ``path``, what could not be written there,
    and the fix."""
    found = usage(path)
    room = f" ({found.free:,} of {found.total:,} bytes free)" if found else ""
    return (
        f"The file system of {path} is full{room}, so {what} could not be written; free space "
        "there (or point it elsewhere) and run the job again."
    )


def local_folder(destination: str) -> Path | None:
    """A store's folder when it is one on this machine (a path or a ``file:`` URI)."""
    parts = urlsplit(destination)
    if parts.scheme in ("", "file") and not parts.netloc:
        return Path(unquote(parts.path) if parts.scheme else destination)
    if len(parts.scheme) == 1:  # a Windows drive letter
        return Path(destination)
    return None
