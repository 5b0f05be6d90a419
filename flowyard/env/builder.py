"""Building job environments with uv: cached by what they contain, never half-built.

An environment lives in ``$XDG_CACHE_HOME/flowyard/envs/<key>``, where the key hashes the
normalised spec, the Python asked for, the platform and uv's version. It is built in a temporary
folder and renamed into place only when complete (MLflow reuses half-built env folders; this does
not), under a file lock, so concurrent jobs needing one new environment build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from flowyard import caches, paths
from flowyard.env import failure, phases
from flowyard.env.spec import left_out_reason
from flowyard.errors import EnvBuildError, InterpreterNotFoundError
from flowyard.jobspec import EnvironmentSpec

MARKER = "flowyard-env.json"
# What of uv's output is kept to explain a failure (all of it goes to the job log): its start
# says which Python, its error comes before a build's output, which can run to megabytes.
_KEPT_HEAD = 1 << 20
_KEPT_TAIL = 1 << 16


@dataclass(frozen=True)
class Env:
    path: Path
    python: Path
    built: bool
    # A shared lock on the environment's use file, held while a job runs in it (see :func:`hold`):
    # pruning never removes an environment in use. Released when closed, or when the process ends.
    held: BinaryIO | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        if self.held is not None:
            self.held.close()

    @property
    def bin_dir(self) -> Path:
        return self.python.parent


def env_root() -> Path:
    return paths.cache_dir() / "envs"


@cache
def uv_bin() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


@cache
def uv_version() -> str:
    return subprocess.run(
        [uv_bin(), "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _uv_env() -> dict[str, str]:
    # Interpreters are the compute's own: uv must not download one behind the operator's back.
    # Without COLUMNS uv writes each message on one line: the job log is not a terminal, and
    # a message wrapped at the submitter's width is one no search of the log finds.
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    return {**env, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


def requirements(spec: EnvironmentSpec, mlflow_version: str) -> tuple[list[str], list[str]]:
    """What to install, and a line for the job log on each requirement added or left out."""
    reqs = []
    names = set()
    notes = []
    for req in [*spec.build_dependencies, *spec.dependencies]:
        try:
            name = canonicalize_name(Requirement(req).name)
        except InvalidRequirement:
            reqs.append(req)  # a URL or a local path: uv reads those, and they are not MLflow
            continue
        reason = left_out_reason(name)
        if reason:
            notes.append(f"leaving out {name}: {reason}")
            continue
        reqs.append(req)
        names.add(name)
    if not names & {"mlflow", "mlflow-skinny"}:
        reqs.append(f"mlflow-skinny=={mlflow_version}")
        notes.append(
            f"adding mlflow-skinny=={mlflow_version} so the job's `import mlflow` tracks to the "
            "workspace"
        )
    return reqs, notes


def python_request(spec: EnvironmentSpec) -> str:
    return spec.python or f"{sys.version_info.major}.{sys.version_info.minor}"


def describe(spec: EnvironmentSpec) -> str:
    """The environment file and the Python it is built for, as the job log names them."""
    asked = spec.python
    python = f"Python {asked}" if asked else f"the compute's Python {python_request(spec)}"
    return f"{spec.source or 'spec'} ({python})"


def env_key(spec: EnvironmentSpec, reqs: list[str]) -> str:
    identity = {
        "python": python_request(spec),
        "requirements": reqs,
        "platform": [sys.platform, platform.machine()],
        "uv": uv_version(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _found(path: Path) -> Env | None:
    marker = path / MARKER
    try:
        meta = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    python = path / meta["python"]
    if not python.exists():
        return None
    os.utime(marker)  # last use, for `flowyard env prune`
    return Env(path=path, python=python, built=False)


def _stream(
    args: list[str],
    log: Callable[[bytes], None],
    cwd: Path | None = None,
    wrap: Sequence[str] = (),
) -> tuple[int, str]:
    """Run uv (behind ``wrap``, a sandbox's command), every byte of its output to ``log``; its
    exit code and what of its output is kept to explain a failure."""
    proc = subprocess.Popen(
        [*wrap, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_uv_env(),
        cwd=cwd,
    )
    assert proc.stdout is not None
    head = bytearray()
    tail = b""
    while chunk := os.read(proc.stdout.fileno(), 65536):
        log(chunk)
        if len(head) < _KEPT_HEAD:
            head += chunk[: _KEPT_HEAD - len(head)]
        else:
            tail = (tail + chunk)[-_KEPT_TAIL:]
    return proc.wait(), (bytes(head) + tail).decode(errors="replace")


def interpreters() -> list[str]:
    """The Pythons uv finds on this machine (without downloading any), as "version path"."""
    result = subprocess.run(
        [
            uv_bin(),
            "python",
            "list",
            "--only-installed",
            "--python-preference",
            "only-system",
            "--output-format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=_uv_env(),
        check=False,
    )
    try:
        found = json.loads(result.stdout or "[]")
    except ValueError:
        return []
    return sorted({f"{p['version']} at {p['path']}" for p in found})


def _missing_python(spec: EnvironmentSpec) -> InterpreterNotFoundError:
    found = "; ".join(interpreters()) or "none"
    return InterpreterNotFoundError(
        f"{spec.source or 'The environment'} asks for Python {python_request(spec)}, which "
        f"this compute does not have (found: {found}); install it and put it on PATH, or change "
        "the Python version in the environment file."
    )


def _has_python(spec: EnvironmentSpec) -> bool:
    # `uv python find` and not `uv venv`'s own failure: where pyenv's shims are on PATH, a
    # version pyenv has but does not activate fails `uv venv` with pyenv's message, not uv's.
    result = subprocess.run(
        [uv_bin(), "python", "find", "--python-preference", "only-system", python_request(spec)],
        capture_output=True,
        env=_uv_env(),
        check=False,
    )
    return result.returncode == 0


def check_python(spec: EnvironmentSpec, mlflow_version: str) -> None:
    """Raise now, before a job exists, if this machine cannot build ``spec``'s environment for
    want of its Python. Free when the environment is already cached."""
    if not spec.builds or _found(env_root() / env_key(spec, requirements(spec, mlflow_version)[0])):
        return
    if not _has_python(spec):
        raise _missing_python(spec)


def ensure(
    spec: EnvironmentSpec,
    mlflow_version: str,
    log: Callable[[bytes], None],
    project_dir: Path | None = None,
    wrap: Sequence[str] = (),
) -> Env:
    """The environment for ``spec``: reused when cached, else built (once, even when several
    jobs ask at the same moment). Relative paths in requirements are read from
    ``project_dir``. uv runs behind ``wrap`` (a sandbox's command, ending in ``--``): building
    a package from source runs its code."""
    reqs, notes = requirements(spec, mlflow_version)
    key = env_key(spec, reqs)
    root = env_root()
    root.mkdir(parents=True, exist_ok=True)
    held = hold(root, key)
    try:
        return replace(_ensure(spec, reqs, notes, key, log, project_dir, wrap), held=held)
    except BaseException:
        held.close()
        raise


def hold(root: Path, key: str) -> BinaryIO:
    """A shared lock on environment ``key``'s use file: while it is open, :func:`prune` leaves
    the environment alone (it waits for a prune that is removing it right now)."""
    held = (root / f"{key}.use").open("a+b")
    fcntl.flock(held.fileno(), fcntl.LOCK_SH)
    return held


def _ensure(
    spec: EnvironmentSpec,
    reqs: list[str],
    notes: list[str],
    key: str,
    log: Callable[[bytes], None],
    project_dir: Path | None,
    wrap: Sequence[str],
) -> Env:
    root = env_root()
    final = root / key
    if env := _found(final):
        return env
    with FileLock(str(root / f"{key}.lock")):
        if env := _found(final):
            return env
        for note in notes:
            log(f"[flowyard] {note}\n".encode())
        if final.exists():
            # Left by an environment whose base Python or marker has gone: never reused, and in
            # the way of the rename that would replace it. Moved aside first, since a background
            # compile may still be writing into it (`flowyard env prune` removes what is left).
            aside = root / f".build-{key}-stale-{uuid.uuid4().hex[:8]}"
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        return _build(spec, reqs, final, log, project_dir, wrap)


def _build(
    spec: EnvironmentSpec,
    reqs: list[str],
    final: Path,
    log: Callable[[bytes], None],
    project_dir: Path | None,
    wrap: Sequence[str],
) -> Env:
    request = python_request(spec)
    if not _has_python(spec):
        raise _missing_python(spec)
    work = final.parent / f".build-{final.name}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        code, output = _stream(
            [
                uv_bin(),
                "venv",
                "--relocatable",
                "--no-project",
                "--python",
                request,
                "--python-preference",
                "only-system",
                str(work),
            ],
            log,
            wrap=wrap,
        )
        if code != 0:
            raise EnvBuildError(
                f"Creating the environment failed ({failure.first_error(output)}); the job log "
                "holds uv's whole output."
            )
        python = work / "bin" / "python"
        if reqs:
            # One line each in a requirements file, as pip reads them: options such as
            # `--extra-index-url URL` stay whole, and relative paths resolve from the project.
            listed = work / "flowyard-requirements.txt"
            listed.write_text("\n".join(reqs) + "\n")
            install = [uv_bin(), "pip", "install", "--python", str(python)]
            log(phases.resolving_line(len(reqs)))
            watched = phases.UvWatcher(log)
            code, output = _stream(
                [*install, "-r", str(listed)], watched, cwd=project_dir, wrap=wrap
            )
            if code != 0:
                source = spec.source or "the environment file"
                raise EnvBuildError(failure.explain(output, source, request))
        meta = {
            "spec": spec.to_json(),
            "requirements": reqs,
            "python": "bin/python",
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 2),
        }
        (work / MARKER).write_text(json.dumps(meta, indent=2))
        # The rename is what makes the environment exist: a build killed before it leaves only a
        # `.build-*` folder that no job ever uses (and `flowyard env prune` removes).
        os.rename(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    env = Env(path=final, python=final / "bin" / "python", built=True)
    _compile_later(env)
    return env


def _compile_later(env: Env) -> None:
    """Compile the environment's packages in the background when this machine's jobs will not.

    With PYTHONDONTWRITEBYTECODE set (as on many CI machines) Python compiles every import from
    source at every start, seconds for a scientific stack. Compiling during the build would make
    the first job wait that long; in the background it costs no job anything, and later jobs
    load bytecode (written atomically, so a job importing meanwhile is never hurt). Without the
    variable, Python writes the bytecode itself on first use, as it would anywhere. The compile
    holds the environment as a job does (the lock goes with the descriptor it inherits), so no
    prune removes the folder while it writes into it.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    with hold(env.path.parent, env.path.name) as held:
        subprocess.Popen(
            [
                "nice",
                "-n",
                "10",
                str(env.python),
                "-m",
                "compileall",
                "-q",
                "-j",
                "0",
                str(env.path / "lib"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(held.fileno(),),
            start_new_session=True,
        )


@dataclass(frozen=True)
class EnvInfo:
    key: str
    source: str
    python: str
    requirements: list[str]
    size_bytes: int
    last_used: float


def _size(path: Path) -> int:
    # Files vanishing meanwhile (another host's runner pruning) count for nothing.
    return caches.folder_size(path)


def list_envs() -> list[EnvInfo]:
    found = []
    root = env_root()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        marker = path / MARKER
        if path.name.startswith("."):
            continue
        try:
            meta = json.loads(marker.read_text())
            size, last_used = _size(path), marker.stat().st_mtime
        except (OSError, ValueError):
            continue  # not an environment, or one being pruned right now
        spec = EnvironmentSpec.from_json(meta["spec"])
        found.append(
            EnvInfo(
                key=path.name,
                source=spec.source or "",
                python=python_request(spec),
                requirements=meta["requirements"],
                size_bytes=size,
                last_used=last_used,
            )
        )
    return found


def prune(
    unused_days: float | None,
    max_bytes: int | None = None,
    *,
    dry_run: bool = False,
) -> list[tuple[str, int]]:
    """Remove unfinished builds nobody is working on; then, the least recently used first,
    environments unused for ``unused_days`` (all of them when None) and, past ``max_bytes`` in
    all, as many more as bring the cache back under it. Never one being built or checked, nor
    one a job runs in (see :func:`hold`). Returns what was removed (or, on a dry run, would be):
    each folder's name and bytes."""
    root = env_root()
    cutoff = None if unused_days is None else time.time() - unused_days * 86400
    found: list[tuple[float, int, Path]] = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir():
            continue
        marker = path / MARKER
        building = path.name.startswith(".build-")
        used = 0.0 if building or not marker.is_file() else marker.stat().st_mtime
        found.append((used, _size(path), path))
    total = sum(size for _, size, _ in found)
    removed = []
    for used, size, path in sorted(found, key=lambda f: (f[0], f[2].name)):
        building = path.name.startswith(".build-")
        over = max_bytes is not None and total > max_bytes
        if not (building or cutoff is None or used < cutoff or over):
            continue
        key = path.name.split("-")[1] if building else path.name
        if _remove_unless_busy(root, key, path, dry_run, in_use_counts=not building):
            removed.append((path.name, size))
            total -= size
    return removed


def _remove_unless_busy(
    root: Path, key: str, path: Path, dry_run: bool, *, in_use_counts: bool
) -> bool:
    """Remove ``path`` unless environment ``key`` is being built or checked, or (where
    ``in_use_counts``: not for a build's leftovers, which no job runs in) a job runs in it."""
    lock = FileLock(str(root / f"{key}.lock"))
    try:
        lock.acquire(timeout=0)
    except TimeoutError:
        return False  # being built or checked right now
    try:
        if not in_use_counts:
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            return True
        with (root / f"{key}.use").open("a+b") as use:
            try:
                fcntl.flock(use.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a job runs in it
            if not dry_run:
                shutil.rmtree(path, ignore_errors=True)
            return True
    finally:
        lock.release()
