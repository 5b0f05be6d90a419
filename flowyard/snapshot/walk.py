"""Walking a project into a manifest: its ignore files, its links, its limits, and a hash cache.

A project is walked honouring its ignore files, and only files whose size or mtime changed since
the last walk are hashed again. What the ignore rules leave out, and links that cannot be
followed, are kept with the manifest, so the submit path can say what the job will not find.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowyard import defaults
from flowyard.errors import InvalidRequestError
from flowyard.snapshot.manifest import (
    DIGEST,
    MB,
    FileEntry,
    LeftOut,
    Manifest,
    shown_path,
    size_text,
    unsafe_path_reason,
)

if TYPE_CHECKING:
    import pathspec

    from flowyard.snapshot.progress import SnapshotProgress

# Files modified this recently may change again within the filesystem's mtime resolution
# without their mtime moving, so their hashes are not cached (git's "racily clean" problem).
_RACY_NS = 2_000_000_000
# Folder entries read, over one walk, to size the folders ignore rules leave out: enough to
# count a data folder, while a left-out environment of 100,000 files costs no more than this.
_MEASURE_BUDGET = 20_000


class SnapshotTooLargeError(InvalidRequestError):
    code = "SNAPSHOT_TOO_LARGE"


def cache_home() -> Path:
    """Flowyard's user cache folder: ``$XDG_CACHE_HOME/flowyard``, else ``~/.cache/flowyard``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "flowyard"


@dataclass(frozen=True)
class _Found:
    path: str
    size: int
    mtime_ns: int
    executable: bool


@dataclass(frozen=True)
class _Rules:
    """One ignore file: the folder prefix it applies under, its path and its lines."""

    base: str
    file: str
    lines: list[str]
    spec: pathspec.GitIgnoreSpec


# What a default exclude matched: never code, so never reported.
_NEVER_CODE = LeftOut("", "a default exclude")


class _Walk:
    def __init__(self, root: Path) -> None:
        # Here, not at the top: the runner imports this package to fetch snapshots, not to
        # make them.
        import pathspec

        self.pathspec = pathspec
        self.root = root
        self.root_real = os.path.realpath(root)
        self.excludes = pathspec.GitIgnoreSpec.from_lines(defaults.SNAPSHOT_DEFAULT_EXCLUDES)
        self.left_out: list[LeftOut] = []
        self.budget = _MEASURE_BUDGET

    def files(self) -> Iterator[_Found]:
        yield from self._visit(str(self.root), "", (), frozenset({self.root_real}))

    def _rules(self, folder: str, prefix: str) -> _Rules | None:
        for name in defaults.SNAPSHOT_IGNORE_FILES:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                lines = Path(path).read_text(errors="replace").splitlines()
                # A comment in place of each blank line keeps a pattern per line, so a pattern's
                # index is its line number.
                spec = self.pathspec.GitIgnoreSpec.from_lines(
                    [line if line.strip() else "#" for line in lines]
                )
                return _Rules(prefix, prefix + name, lines, spec)
        return None

    def _matched(self, rel: str, rules: tuple[_Rules, ...], path: str) -> LeftOut | None:
        """What leaves ``rel`` (a folder's ending in "/") out, or None when it is kept."""
        if self.excludes.match_file(rel):
            return _NEVER_CODE
        for r in reversed(rules):  # a deeper ignore file overrides a shallower one
            result = r.spec.check_file(rel[len(r.base) :])
            if result.include is None:
                continue
            if not result.include or result.index is None:
                return None
            why = f"{r.file} line {result.index + 1}: {r.lines[result.index].strip()}"
            if not rel.endswith("/"):
                size = os.stat(path).st_size if os.path.isfile(path) else 0
                return LeftOut(rel, why, 1, size, r.file)
            files, size, counted = self._measure(path)
            return LeftOut(rel, why, files, size, r.file, counted)
        return None

    def _measure(self, folder: str) -> tuple[int, int, bool]:
        """Files and bytes under ``folder``, links not followed, within the walk's budget."""
        files = size = 0
        stack = [folder]
        while stack:
            try:
                with os.scandir(stack.pop()) as it:
                    for entry in it:
                        if self.budget <= 0:
                            return files, size, False
                        self.budget -= 1
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False):
                            files += 1
                            size += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue  # an unreadable folder inside a left-out one: counted as empty
        return files, size, True

    def _visit(
        self, folder: str, prefix: str, rules: tuple[_Rules, ...], seen: frozenset[str]
    ) -> Iterator[_Found]:
        # ``folder`` is a real path; ``seen`` holds it and its ancestors', to stop link loops.
        found = self._rules(folder, prefix)
        if found:
            rules = (*rules, found)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = prefix + entry.name
            path = os.path.join(folder, entry.name)
            link = entry.is_symlink()
            if link:
                try:
                    path = os.path.realpath(path, strict=True)
                except OSError as e:
                    broken = "a link in a loop" if e.errno == errno.ELOOP else "a dangling link"
                    self._leave_out(
                        self._matched(rel, rules, path)
                        or LeftOut(rel, f"{broken} to {os.readlink(entry.path)}", 1)
                    )
                    continue
            is_dir = os.path.isdir(path)
            matched = self._matched(rel + "/" if is_dir else rel, rules, path)
            if matched:
                self._leave_out(matched)
            elif is_dir and link and os.path.commonpath([path, self.root_real]) != self.root_real:
                # Only a folder inside the project is followed: one outside could pull in a
                # home folder or a disk.
                outside = f"a link to the folder {path} outside the project"
                self._leave_out(LeftOut(rel + "/", outside, 0))
            elif is_dir and path in seen:
                loop = "a link in a loop, to a folder that holds it"
                self._leave_out(LeftOut(rel + "/", loop, 0))
            elif is_dir:
                yield from self._visit(path, rel + "/", rules, seen | {path})
            elif not os.path.isfile(path):
                self._leave_out(LeftOut(rel, "not a regular file", 1))
            elif link and not os.access(path, os.R_OK):
                self._leave_out(LeftOut(rel, f"a link to {path}, which you cannot read", 1))
            else:
                # A link to a readable file, anywhere, is the user's choice to send that file:
                # its content goes in under the link's name.
                _check_name(self.root, rel)
                st = os.stat(path)
                yield _Found(rel, st.st_size, st.st_mtime_ns, bool(st.st_mode & 0o111))

    def _leave_out(self, item: LeftOut) -> None:
        if item is not _NEVER_CODE:
            self.left_out.append(item)


def _check_name(root: Path, rel: str) -> None:
    try:
        rel.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError(
            f"The file name {rel!r} in {root} is not valid UTF-8; rename it or list it in "
            f"{root / '.flowyardignore'}."
        ) from None
    reason = unsafe_path_reason(rel)
    if reason:
        raise InvalidRequestError(
            f"The file name {shown_path(rel)} in {root} {reason}; rename it or list it in "
            f"{root / '.flowyardignore'}."
        )


def _check_limits(root: Path, found: list[_Found], max_mb: float, max_files: int) -> None:
    total = sum(f.size for f in found)
    over = []
    if total > max_mb * MB:
        over.append(f"{size_text(total)} (the limit is {max_mb:g} MB)")
    if len(found) > max_files:
        over.append(f"{len(found):,} files (the limit is {max_files:,})")
    if not over:
        return
    biggest = ", ".join(_biggest(found, by_count=total <= max_mb * MB))
    raise SnapshotTooLargeError(
        f"The snapshot of {root} is {' and '.join(over)}; the biggest parts are {biggest}; list "
        f"what the job does not need in {root / '.flowyardignore'} (gitignore syntax), or raise "
        "SNAPSHOT_MAX_MB or SNAPSHOT_MAX_FILES in backend_config."
    )


def _biggest(found: list[_Found], by_count: bool, top: int = 5) -> list[str]:
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # "a/" or "a/b.py" -> bytes, files
    children: dict[str, set[str]] = defaultdict(set)
    for f in found:
        parent = ""
        for part in f.path.split("/")[:-1]:
            children[parent].add(parent + part + "/")
            parent += part + "/"
            totals[parent][0] += f.size
            totals[parent][1] += 1
        children[parent].add(f.path)
        totals[f.path] = [f.size, 1]

    def measure(key: str) -> int:
        return totals[key][1 if by_count else 0]

    def focus(key: str) -> str:
        # A folder that is mostly one of its parts is named by that part, the thing to ignore.
        while key in children:
            part = max(children[key], key=measure)
            if measure(part) < 0.8 * measure(key):
                break
            key = part
        return key

    picked = [focus(k) for k in sorted(children[""], key=measure, reverse=True)[:top]]
    return [
        f"{k} ({size_text(totals[k][0])} in {totals[k][1]:,} files)"
        if k.endswith("/")
        else f"{k} ({size_text(totals[k][0])})"
        for k in picked
    ]


# -- manifests and the hash cache ------------------------------------------------------------


def build_manifest(
    project_dir: str | os.PathLike[str],
    *,
    max_mb: float = defaults.SNAPSHOT_MAX_MB,
    max_files: int = defaults.SNAPSHOT_MAX_FILES,
    progress: SnapshotProgress | None = None,
) -> Manifest:
    """Walk and hash a project, checking the limits before hashing anything; ``progress`` hears
    of the hashing as it goes.

    Raises:
        SnapshotTooLargeError: The project is over ``max_mb`` or ``max_files``.
        InvalidRequestError: The folder is missing, or a file cannot be read or named.
    """
    root = Path(project_dir).resolve()
    if not root.is_dir():
        raise InvalidRequestError(f"The project folder {root} does not exist; check the uri.")
    started = time.time_ns()
    walk = _Walk(root)
    try:
        found = list(walk.files())
    except OSError as e:
        raise InvalidRequestError(f"Cannot read the project folder {root} ({e}).") from e
    _check_limits(root, found, max_mb, max_files)
    cache_file = cache_home() / "hashes" / f"{_sha1(str(root))}.json"
    cached = _load_hashes(cache_file)
    known = {f.path: d for f in found if (d := _cached_digest(cached, f))}
    if progress is not None:
        unchanged = sum(f.size for f in found if f.path in known)
        total = sum(f.size for f in found)
        progress.hashing(len(found) - len(known), total - unchanged, len(known), unchanged)

    def digest(f: _Found) -> str:
        if hit := known.get(f.path):
            return hit
        try:
            with open(root / f.path, "rb") as file:
                hexdigest = hashlib.file_digest(file, "sha256").hexdigest()
        except OSError as e:
            raise InvalidRequestError(
                f"Cannot read {root / f.path} ({e.strerror}); fix its permissions or list it in "
                f"{root / '.flowyardignore'}."
            ) from e
        if progress is not None:
            progress.advance(f.size, 1)
        return hexdigest

    with ThreadPoolExecutor(defaults.SNAPSHOT_UPLOAD_WORKERS) as pool:
        digests = list(pool.map(digest, found))
    _save_hashes(
        cache_file,
        {
            f.path: [f.size, f.mtime_ns, d]
            for f, d in zip(found, digests, strict=True)
            if f.mtime_ns < started - _RACY_NS
        },
    )
    files = (
        FileEntry(f.path, d, f.size, f.executable) for f, d in zip(found, digests, strict=True)
    )
    return Manifest(root, tuple(sorted(files, key=lambda e: e.path)), tuple(walk.left_out))


def _cached_digest(cached: dict[str, Any], f: _Found) -> str | None:
    hit = cached.get(f.path)
    if isinstance(hit, list) and hit[:2] == [f.size, f.mtime_ns] and DIGEST.fullmatch(str(hit[-1])):
        return str(hit[-1])
    return None


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def _load_hashes(path: Path) -> dict[str, Any]:
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return files if isinstance(files, dict) else {}


def _save_hashes(path: Path, files: dict[str, Any]) -> None:
    # Only a speed-up: a cache that cannot be written must not fail the submission.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"version": 1, "files": files}))
        os.replace(tmp, path)
    except OSError:
        pass
