"""Building job environments with uv: cached by what they contain, never half-built.

An environment lives in ``$XDG_CACHE_HOME/flowyard/envs/<key>``, where the key hashes the
normalised spec, the Python asked for, the platform and uv's version. It is built in a temporary
folder and renamed into place only when complete (MLflow reuses half-built env folders; this does
not), under a file lock, so concurrent jobs needing one new environment build it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from filelock import FileLock
from packaging.requirements import InvalidRequirement, Requirement

from flowyard import paths
from flowyard.errors import EnvBuildError, InterpreterNotFoundError

MARKER = "flowyard-env.json"
_ERROR_TAIL = 4000


@dataclass(frozen=True)
class Env:
    path: Path
    python: Path
    built: bool

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
    return {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}


def requirements(spec: dict[str, Any], mlflow_version: str) -> tuple[list[str], bool]:
    """What to install, and whether mlflow-skinny was added so the job's `import mlflow` tracks."""
    reqs = [*spec.get("build_dependencies", []), *spec.get("dependencies", [])]
    names = set()
    for req in reqs:
        try:
            names.add(Requirement(req).name.lower().replace("_", "-"))
        except InvalidRequirement:
            continue  # a URL or a local path: uv reads those, and they are not MLflow
    if names & {"mlflow", "mlflow-skinny"}:
        return reqs, False
    return [*reqs, f"mlflow-skinny=={mlflow_version}"], True


def python_request(spec: dict[str, Any]) -> str:
    return spec.get("python") or f"{sys.version_info.major}.{sys.version_info.minor}"


def env_key(spec: dict[str, Any], reqs: list[str]) -> str:
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
    args: list[str], log: Callable[[bytes], None], cwd: Path | None = None
) -> tuple[int, bytes]:
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=_uv_env(),
        cwd=cwd,
    )
    assert proc.stdout is not None
    tail = b""
    while chunk := os.read(proc.stdout.fileno(), 65536):
        log(chunk)
        tail = (tail + chunk)[-_ERROR_TAIL:]
    return proc.wait(), tail


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


def _missing_python(spec: dict[str, Any]) -> InterpreterNotFoundError:
    found = "; ".join(interpreters()) or "none"
    return InterpreterNotFoundError(
        f"{spec.get('source', 'The environment')} asks for Python {python_request(spec)}, which "
        f"this compute does not have (found: {found}); install it and put it on PATH, or change "
        "the Python version in the environment file."
    )


def check_python(spec: dict[str, Any], mlflow_version: str) -> None:
    """Raise now, before a job exists, if this machine cannot build ``spec``'s environment for
    want of its Python. Free when the environment is already cached."""
    if spec.get("manager") != "uv" or _found(
        env_root() / env_key(spec, requirements(spec, mlflow_version)[0])
    ):
        return
    result = subprocess.run(
        [uv_bin(), "python", "find", "--python-preference", "only-system", python_request(spec)],
        capture_output=True,
        env=_uv_env(),
        check=False,
    )
    if result.returncode != 0:
        raise _missing_python(spec)


def ensure(
    spec: dict[str, Any],
    mlflow_version: str,
    log: Callable[[bytes], None],
    project_dir: Path | None = None,
) -> Env:
    """The environment for ``spec``: reused when cached, else built (once, even when several
    jobs ask at the same moment). Relative paths in requirements are read from
    ``project_dir``."""
    reqs, added_mlflow = requirements(spec, mlflow_version)
    key = env_key(spec, reqs)
    root = env_root()
    final = root / key
    if env := _found(final):
        return env
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock")):
        if env := _found(final):
            return env
        if added_mlflow:
            log(
                f"[flowyard] adding mlflow-skinny=={mlflow_version} so the job's `import mlflow` "
                "tracks to the workspace\n".encode()
            )
        if final.exists():
            # Left by an environment whose base Python or marker has gone: never reused, and in
            # the way of the rename that would replace it. Moved aside first, since a background
            # compile may still be writing into it (`flowyard env prune` removes what is left).
            aside = root / f".build-{key}-stale-{uuid.uuid4().hex[:8]}"
            os.rename(final, aside)
            shutil.rmtree(aside, ignore_errors=True)
        return _build(spec, reqs, final, log, project_dir)


def _build(
    spec: dict[str, Any],
    reqs: list[str],
    final: Path,
    log: Callable[[bytes], None],
    project_dir: Path | None,
) -> Env:
    request = python_request(spec)
    work = final.parent / f".build-{final.name}-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    try:
        code, tail = _stream(
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
        )
        if code != 0:
            if b"No interpreter found" in tail:
                raise _missing_python(spec)
            raise EnvBuildError(f"uv venv failed: {tail.decode(errors='replace').strip()}")
        python = work / "bin" / "python"
        if reqs:
            # One line each in a requirements file, as pip reads them: options such as
            # `--extra-index-url URL` stay whole, and relative paths resolve from the project.
            listed = work / "flowyard-requirements.txt"
            listed.write_text("\n".join(reqs) + "\n")
            install = [uv_bin(), "pip", "install", "--python", str(python)]
            code, tail = _stream([*install, "-r", str(listed)], log, cwd=project_dir)
            if code != 0:
                raise EnvBuildError(
                    f"Installing the environment's packages failed: "
                    f"{tail.decode(errors='replace').strip()}"
                )
        meta = {
            "spec": spec,
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
    variable, Python writes the bytecode itself on first use, as it would anywhere.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
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
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def list_envs() -> list[EnvInfo]:
    found = []
    root = env_root()
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        marker = path / MARKER
        if path.name.startswith(".") or not marker.is_file():
            continue
        meta = json.loads(marker.read_text())
        found.append(
            EnvInfo(
                key=path.name,
                source=str(meta["spec"].get("source", "")),
                python=python_request(meta["spec"]),
                requirements=meta["requirements"],
                size_bytes=_size(path),
                last_used=marker.stat().st_mtime,
            )
        )
    return found


def prune(unused_days: float | None) -> list[str]:
    """Remove unfinished builds nobody is working on, and environments unused for
    ``unused_days`` (all of them when None). Returns what was removed."""
    root = env_root()
    removed = []
    cutoff = None if unused_days is None else time.time() - unused_days * 86400
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if not path.is_dir():
            continue
        key = path.name.split("-")[1] if path.name.startswith(".build-") else path.name
        lock = FileLock(str(root / f"{key}.lock"))
        try:
            lock.acquire(timeout=0)
        except TimeoutError:
            continue  # being built or checked right now
        try:
            marker = path / MARKER
            stale = (
                path.name.startswith(".build-")
                or cutoff is None
                or (marker.is_file() and marker.stat().st_mtime < cutoff)
            )
            if stale:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        finally:
            lock.release()
    return removed
