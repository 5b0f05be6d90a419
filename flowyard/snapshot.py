"""Snapshots: the exact code of a project, as a manifest of content-addressed blobs.

A project is walked honouring its ignore files, only files whose size or mtime changed since the
last walk are hashed again, only blobs the workspace lacks are uploaded, and the snapshot's id is
the sha256 of its manifest. The runner materializes a snapshot from a local blob cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import httpx

from flowyard import defaults
from flowyard.client import Client
from flowyard.errors import (
    FlowyardError,
    InvalidRequestError,
    WorkspaceUnreachableError,
    error_from_payload,
)

DIGEST = re.compile(r"[0-9a-f]{64}")
MB = 1_000_000
_CHUNK = 1 << 20
# Files modified this recently may change again within the filesystem's mtime resolution
# without their mtime moving, so their hashes are not cached (git's "racily clean" problem).
_RACY_NS = 2_000_000_000
# A cache blob's mtime and mode: a job writing into its hard-linked file moves the mtime, or a
# chmod changes the mode, and the entry then counts as corrupt.
_BLOB_MTIME_NS = 0
_BLOB_MODE = 0o644
_DOWNLOAD_ATTEMPTS = 3


class SnapshotTooLargeError(InvalidRequestError):
    code = "SNAPSHOT_TOO_LARGE"


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
class Manifest:
    """The files of a snapshot, sorted by path, and the project folder they were read from."""

    root: Path
    files: tuple[FileEntry, ...]

    @property
    def id(self) -> str:
        return snapshot_id(self.to_json())

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> list[dict[str, Any]]:
        return [f.to_json() for f in self.files]


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


def cache_home() -> Path:
    """Flowyard's user cache folder: ``$XDG_CACHE_HOME/flowyard``, else ``~/.cache/flowyard``."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if os.path.isabs(base) else Path.home() / ".cache") / "flowyard"


# -- walking a project -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Found:
    path: str
    size: int
    mtime_ns: int
    executable: bool


def _walk(root: Path) -> Iterator[_Found]:
    # Here, not at the top: the runner imports this module to fetch snapshots, not to make them.
    import pathspec

    _Specs = tuple[tuple[str, pathspec.GitIgnoreSpec], ...]
    excludes = pathspec.GitIgnoreSpec.from_lines(defaults.SNAPSHOT_DEFAULT_EXCLUDES)
    root_real = os.path.realpath(root)

    def ignored(rel: str, specs: _Specs) -> bool:
        if excludes.match_file(rel):
            return True
        for base, spec in reversed(specs):  # a deeper ignore file overrides a shallower one
            include = spec.check_file(rel[len(base) :]).include
            if include is not None:
                return include
        return False

    def visit(folder: str, prefix: str, specs: _Specs, seen: frozenset[str]) -> Iterator[_Found]:
        # ``folder`` is a real path; ``seen`` holds it and its ancestors', to stop link loops.
        for name in defaults.SNAPSHOT_IGNORE_FILES:
            ignore_file = os.path.join(folder, name)
            if os.path.isfile(ignore_file):
                lines = Path(ignore_file).read_text(errors="replace").splitlines()
                specs = (*specs, (prefix, pathspec.GitIgnoreSpec.from_lines(lines)))
                break
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            rel = prefix + entry.name
            path = os.path.join(folder, entry.name)
            if entry.is_symlink():
                path = os.path.realpath(path)
                # Links are followed only inside the project: one pointing out could pull in a
                # home folder or a secret.
                if os.path.commonpath([path, root_real]) != root_real:
                    continue
            if os.path.isdir(path):
                if path not in seen and not ignored(rel + "/", specs):
                    yield from visit(path, rel + "/", specs, seen | {path})
            elif os.path.isfile(path) and not ignored(rel, specs):
                _check_name(root, rel)
                st = os.stat(path)
                yield _Found(rel, st.st_size, st.st_mtime_ns, bool(st.st_mode & 0o111))

    yield from visit(str(root), "", (), frozenset({root_real}))


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
        over.append(f"{_size(total)} (the limit is {max_mb:g} MB)")
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
        f"{k} ({_size(totals[k][0])} in {totals[k][1]:,} files)"
        if k.endswith("/")
        else f"{k} ({_size(totals[k][0])})"
        for k in picked
    ]


def _size(size: int) -> str:
    for unit, factor in (("GB", 1000 * MB), ("MB", MB), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:,.1f} {unit}"
    return f"{size} bytes"


# -- manifests and the hash cache ------------------------------------------------------------


def build_manifest(
    project_dir: str | os.PathLike[str],
    *,
    max_mb: float = defaults.SNAPSHOT_MAX_MB,
    max_files: int = defaults.SNAPSHOT_MAX_FILES,
) -> Manifest:
    """Walk and hash a project, checking the limits before hashing anything.

    Raises:
        SnapshotTooLargeError: The project is over ``max_mb`` or ``max_files``.
        InvalidRequestError: The folder is missing, or a file cannot be read or named.
    """
    root = Path(project_dir).resolve()
    if not root.is_dir():
        raise InvalidRequestError(f"The project folder {root} does not exist; check the uri.")
    started = time.time_ns()
    try:
        found = list(_walk(root))
    except OSError as e:
        raise InvalidRequestError(f"Cannot read the project folder {root} ({e}).") from e
    _check_limits(root, found, max_mb, max_files)
    cache_file = cache_home() / "hashes" / f"{_sha1(str(root))}.json"
    cached = _load_hashes(cache_file)

    def digest(f: _Found) -> str:
        hit = cached.get(f.path)
        if (
            isinstance(hit, list)
            and hit[:2] == [f.size, f.mtime_ns]
            and DIGEST.fullmatch(str(hit[-1]))
        ):
            return str(hit[-1])
        try:
            with open(root / f.path, "rb") as file:
                return hashlib.file_digest(file, "sha256").hexdigest()
        except OSError as e:
            raise InvalidRequestError(
                f"Cannot read {root / f.path} ({e.strerror}); fix its permissions or list it in "
                f"{root / '.flowyardignore'}."
            ) from e

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
    return Manifest(root, tuple(sorted(files, key=lambda e: e.path)))


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


# -- talking to the workspace ----------------------------------------------------------------


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


# -- git -------------------------------------------------------------------------------------


def git_info(project_dir: str | os.PathLike[str]) -> dict[str, str]:
    """MLflow's git tags for the project, plus ``flowyard.git.dirty``; empty outside git.

    Never raises: a missing git or a broken repository only means no tags.
    """
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0"}

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", os.fspath(project_dir), *args],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                env=env,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    tags = {"mlflow.source.git.commit": commit}
    branch = git("rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD" means detached
        tags["mlflow.source.git.branch"] = branch
    url = git("config", "--get", "remote.origin.url")
    if url:
        tags["mlflow.source.git.repoURL"] = tags["mlflow.gitRepoURL"] = _without_credentials(url)
    status = git("status", "--porcelain")
    if status is not None:
        tags["flowyard.git.dirty"] = "true" if status else "false"
    return tags


def _without_credentials(url: str) -> str:
    # Tags are visible to everyone in the workspace; a token in an https remote must not be.
    parts = urlsplit(url)
    if "://" not in url or not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
