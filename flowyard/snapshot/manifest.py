"""A snapshot's manifest: its files, its id, the rules its paths obey, and what it left out.

Pure values, shared by the client that builds a manifest and the server that stores it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowyard import defaults

DIGEST = re.compile(r"[0-9a-f]{64}")
MB = 1_000_000
# The submit path prints what a snapshot left out in a few lines, never a page.
_SHOWN_GROUPS = 3
_SHOWN_NAMES = 3


@dataclass(frozen=True)
class FileEntry:
    path: str
    digest: str
    size: int
    executable: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "digest": self.digest,
            "size": self.size,
            "executable": self.executable,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileEntry:
        return cls(
            str(data["path"]), str(data["digest"]), int(data["size"]), bool(data["executable"])
        )


@dataclass(frozen=True)
class LeftOut:
    """A file or folder of the project that a snapshot leaves out, and why.

    Attributes:
        path: Relative to the project, "/"-separated; a folder's ends with "/".
        why: The rule that matched (``.gitignore line 3: *.csv``), or what is wrong with a link.
        files: How many files that is (a folder's are counted up to a bound).
        size: Their bytes.
        ignore_file: The ignore file whose rule matched, relative to the project; None when no
            rule did (a link that cannot be followed).
        counted: False when a folder was too big to count whole: files and size are then at
            least what they say.
    """

    path: str
    why: str
    files: int = 1
    size: int = 0
    ignore_file: str | None = None
    counted: bool = True


@dataclass(frozen=True)
class Manifest:
    """The files of a snapshot, sorted by path, the project folder they were read from, and
    what of that folder the snapshot leaves out (apart from the default excludes)."""

    root: Path
    files: tuple[FileEntry, ...]
    left_out: tuple[LeftOut, ...] = ()

    @property
    def id(self) -> str:
        return snapshot_id(self.to_json())

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.files]

    def left_out_report(self) -> str:
        """What the ignore rules and links left out, in a few lines; "" when nothing was."""
        return left_out_report(self.root, self.left_out)


def left_out_report(root: Path, left_out: Iterable[LeftOut]) -> str:
    by_rule: dict[str, list[LeftOut]] = defaultdict(list)
    others: list[LeftOut] = []
    for item in left_out:
        (by_rule[item.why] if item.ignore_file else others).append(item)
    lines = []
    if by_rule:
        groups = sorted(by_rule.values(), key=lambda g: (-sum(i.size for i in g), g[0].path))
        everything = [i for g in groups for i in g]
        lines.append(
            f"flowyard: ignore rules leave {_amount(everything)} out of the snapshot of {root}:"
        )
        lines.extend(f"  {_names(g)} ({_amount(g)}): {g[0].why}" for g in groups[:_SHOWN_GROUPS])
        rest = groups[_SHOWN_GROUPS:]
        if rest:
            rest_items = [i for g in rest for i in g]
            lines.append(f"  and {len(rest)} more rules ({_amount(rest_items)})")
        lines.append(f"  {_advice(groups[0][0])}")
    if others:
        shown = "; ".join(f"{i.path} ({i.why})" for i in others[:_SHOWN_NAMES])
        more = f"; and {len(others) - _SHOWN_NAMES} more" if len(others) > _SHOWN_NAMES else ""
        lines.append(f"flowyard: the snapshot also leaves out {shown}{more}.")
    return "\n".join(lines)


def _names(items: list[LeftOut]) -> str:
    shown = ", ".join(i.path for i in items[:_SHOWN_NAMES])
    more = len(items) - _SHOWN_NAMES
    return f"{shown} and {more} more" if more > 0 else shown


def _amount(items: list[LeftOut]) -> str:
    plus = "" if all(i.counted for i in items) else "+"
    files = sum(i.files for i in items)
    size = size_text(sum(i.size for i in items))
    return f"{files:,}{plus} file{'s' if files != 1 else ''}, {size}{plus}"


def _advice(item: LeftOut) -> str:
    assert item.ignore_file is not None
    folder, _, name = item.ignore_file.rpartition("/")
    pattern = "!" + item.path[len(folder) + 1 :] if folder else "!" + item.path
    if name == ".gitignore":
        # A rule git needs stays in .gitignore: a .flowyardignore beside it replaces it for
        # snapshots alone.
        first = defaults.SNAPSHOT_IGNORE_FILES[0]
        return (
            f"To send them, add lines such as `{pattern}` to a {first} beside that {name} (the "
            f"first of {', '.join(defaults.SNAPSHOT_IGNORE_FILES)} found in a folder is the only "
            f"one read there, so copy the {name} rules you keep)."
        )
    return f"To send them, add lines such as `{pattern}` after that rule in {item.ignore_file}."


def size_text(size: int) -> str:
    for unit, factor in (("GB", 1000 * MB), ("MB", MB), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:,.1f} {unit}"
    return f"{size} bytes"


def snapshot_id(files: Iterable[Mapping[str, Any]]) -> str:
    """The sha256 of a manifest's canonical JSON: entries sorted by path, keys sorted, no spaces.

    Client and server both name snapshots with this function, so the same files get the same id.
    """
    entries = sorted((FileEntry.from_json(f).to_json() for f in files), key=lambda e: e["path"])
    text = json.dumps(entries, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` cannot name a file of a snapshot, or None when it can.

    A snapshot path is relative, with "/" between its parts, and must stay inside the folder a
    runner materializes it in, on any operating system.
    """
    if not path:
        return "is empty"
    if "\0" in path:
        return "contains a NUL character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    parts = path.split("/")
    if "" in parts:
        return "has an empty part (a doubled or trailing '/')"
    if "." in parts or ".." in parts:
        return "has a '.' or '..' part"
    try:
        encoded = [len(part.encode()) for part in parts]
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    if max(encoded) > defaults.SNAPSHOT_MAX_NAME_BYTES:
        return (
            f"has a part of {max(encoded):,} bytes, over the limit of "
            f"{defaults.SNAPSHOT_MAX_NAME_BYTES} bytes"
        )
    if sum(encoded) + len(parts) - 1 > defaults.SNAPSHOT_MAX_PATH_BYTES:
        return (
            f"is {sum(encoded) + len(parts) - 1:,} bytes long, over the limit of "
            f"{defaults.SNAPSHOT_MAX_PATH_BYTES:,} bytes"
        )
    return None


def shown_path(path: str, limit: int = 80) -> str:
    """``path`` quoted for a message, cut short when it is long."""
    return repr(path) if len(path) <= limit else repr(path[:limit]) + f"... ({len(path):,} chars)"
