"""What a runner started on the workspace host may see: an environment built from an allow-list,
never the server's own, and (isolation ``sandbox``) a bubblewrap sandbox that hides the
workspace's files, the server's config folder, other jobs and other processes.

Light on purpose: the runner's side may import it without the server's dependencies.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from flowyard import paths

# Flowyard's own code (not `flowyard.__file__`: the runner imports this without the package's
# top level, which brings the API's models).
_PACKAGE = Path(__file__).resolve().parents[1]

SANDBOX = "sandbox"
NONE = "none"
# Every job in a container of the compute's image (flowyard.env.containers), its runner outside.
CONTAINER = "container"
ISOLATIONS = (SANDBOX, CONTAINER, NONE)

# The server's variables a runner gets, each with its reason; a name ending in "*" is a prefix.
# Everything else stays behind: the database URL (_MLFLOW_SERVER_FILE_STORE), the server's
# settings (FLOWYARD_SERVER_SETTINGS), its secret key (FLOWYARD_SECRET_KEY), cloud credentials.
PASSED: dict[str, str] = {
    "PATH": "finds bash, python and the host's tools",
    "HOME": "tools find their dotfiles and default caches under it",
    "USER": "who the job runs as, for tools that ask",
    "LOGNAME": "who the job runs as, for tools that ask",
    "LANG": "the host's locale: text the job prints and reads",
    "LC_*": "the host's locale: text the job prints and reads",
    "TZ": "the host's time zone",
    "TMPDIR": "where the host wants temporary files",
    "XDG_CACHE_HOME": "the runner's job folders and built environments live under it",
    "XDG_CONFIG_HOME": "uv's and pip's own config files (Flowyard's folder under it is hidden)",
    "XDG_DATA_HOME": "uv's managed Pythons",
    "FLOWYARD_HEARTBEAT_S": "the runner's own tunable",
    "FLOWYARD_KILL_GRACE_S": "the runner's own tunable",
    "FLOWYARD_RETRY_FOR_S": "the runner's own tunable",
    "FLOWYARD_BLOB_CACHE_MB": "the runner's own tunable",
    "FLOWYARD_ENV_CACHE_MB": "the runner's own tunable",
    "FLOWYARD_CONTAINER_ENGINE": "the engine docker_env jobs run with (podman or docker)",
    "XDG_RUNTIME_DIR": "rootless Podman's runtime folder",
    "DOCKER_HOST": "where Docker's daemon listens, for docker_env jobs",
    "CONTAINER_HOST": "where a remote Podman listens, for docker_env jobs",
    "UV_*": "how uv builds job environments here (index, find-links, cache, offline)",
    "PIP_*": "how pip installs here (index, find-links, certificates), for jobs that use it",
    "SSL_CERT_FILE": "the host's CA certificates (e.g. for a TLS-inspecting proxy)",
    "SSL_CERT_DIR": "the host's CA certificates",
    "REQUESTS_CA_BUNDLE": "the host's CA certificates, as requests reads them",
    "CURL_CA_BUNDLE": "the host's CA certificates, as curl reads them",
    "http_proxy": "the host's way out to the network",
    "https_proxy": "the host's way out to the network",
    "no_proxy": "the host's way out to the network",
    "HTTP_PROXY": "the host's way out to the network",
    "HTTPS_PROXY": "the host's way out to the network",
    "NO_PROXY": "the host's way out to the network",
    "OPENBLAS_*": "numpy's BLAS needs its CPU named on hosts where detection fails",
    "PYTHONDONTWRITEBYTECODE": "the host's choice; the environment builder compiles ahead for it",
    "PYENV_ROOT": "which Python pyenv's shims on PATH run",
    "PYENV_VERSION": "which Python pyenv's shims on PATH run",
    "CUDA_VISIBLE_DEVICES": "the GPUs this host gives its jobs",
    "LD_LIBRARY_PATH": "shared libraries (CUDA, MKL) the host's Python finds only through it",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "whether runners record system metrics (a job may say)",
    "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "how often runners sample them (a job may say)",
}
_NAMES = frozenset(k for k in PASSED if not k.endswith("*"))
_PREFIXES = tuple(k[:-1] for k in PASSED if k.endswith("*"))


def runner_env(environ: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """The runner's environment: the allowed part of ``environ``, then the command's own."""
    kept = {k: v for k, v in environ.items() if k in _NAMES or k.startswith(_PREFIXES)}
    return {**kept, **own}


def describe(isolation: str, image: str | None = None) -> str:
    """What a process compute's jobs are kept from, in a line for `compute show`."""
    if isolation == CONTAINER:
        return (
            f"container: every job runs in a container of {image} (a docker_env job in its own "
            "image), which shows it no host file but its own folder and, read-only, its "
            "environment and the Python that links to; own pid, IPC and mount namespaces; the "
            "host's network; a clean environment"
        )
    if isolation == NONE:
        return (
            "none: jobs run as the server's user and can read the workspace's database, "
            "secret key and artifacts (only their environment is clean)"
        )
    return (
        "sandbox: bubblewrap; hides the workspace folder, the server's config folder and "
        "other jobs' folders; the host's files read-only but for /tmp and the caches; own pid "
        "and IPC namespaces; a clean environment"
    )


def _under(path: Path, folder: Path) -> bool:
    return path != folder and path.is_relative_to(folder)


def bwrap_argv(
    folders: Iterable[Path],
    files: Iterable[Path],
    jobs_dir: Path,
    job_dir: Path,
    readable: Iterable[Path] = (),
    writable: Iterable[Path] = (),
    devices: Iterable[Path] = (),
    code: Iterable[Path] = (),
    *,
    root: bool = False,
) -> list[str]:
    """bubblewrap's arguments, up to the command, for one runner.

    The host's files are read-only (a job must not rewrite the server's code or the host's
    configuration), bar ``writable``; its devices are a minimal set, bar ``devices``.

    Args:
        folders: Folders to hide (an empty tmpfs over each).
        files: Files to hide (an empty file over each).
        jobs_dir: Where every job's folder lives on this host: hidden but for ``job_dir``.
        job_dir: This job's own folder, writable.
        readable: Paths the runner reads (its Python) that stay visible inside a hidden folder.
        writable: Paths jobs write (temporary files, caches, built environments), visible even
            inside a hidden folder.
        devices: Host devices jobs use (GPUs).
        code: The server's own code and Python (its package, its virtualenv): read-only even
            where they lie under a writable path (a server run from a folder in /tmp).
        root: Whether the server runs as root, whose capabilities could undo the mounts.
    """
    tmpfs, empty = set(folders), set(files)
    private = sorted(tmpfs | empty)
    writable = sorted(set(writable))

    def outermost(found: list[Path]) -> list[list[str]]:
        return [
            ["--tmpfs", str(p)] if p in tmpfs else ["--ro-bind", "/dev/null", str(p)]
            for p in found
            if not any(_under(p, other) for other in found if other in tmpfs)
        ]

    def hidden(path: Path) -> bool:
        return any(_under(path, f) for f in tmpfs)

    args = ["--ro-bind", "/", "/", "--dev", "/dev"]
    for device in sorted(set(devices)):
        args += ["--dev-bind", str(device), str(device)]
    args += ["--proc", "/proc"]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    for path in sorted(set(code)):
        if any(_under(path, w) for w in writable):
            args += ["--ro-bind", str(path), str(path)]
    for hide in outermost(private):
        args += hide
    shown = sorted({p for p in readable if hidden(p)} | {p for p in writable if hidden(p)})
    for path in shown:
        args += ["--bind" if path in writable else "--ro-bind", str(path), str(path)]
    # What lies inside a path shown again is hidden again.
    for hide in outermost([p for p in private if any(_under(p, k) for k in shown)]):
        args += hide
    args += ["--tmpfs", str(jobs_dir), "--bind", str(job_dir), str(job_dir)]
    args += ["--chdir", str(job_dir)]
    # A pid namespace, with the /proc above: no other process's environment or memory. No
    # --new-session and no --die-with-parent: the runner stays in the process group the server
    # cancels with killpg, and outlives a server restart. Its session already has no terminal.
    args += ["--unshare-pid", "--unshare-ipc"]
    if root:
        args += ["--cap-drop", "ALL"]
    return args


class _Check:
    """Whether bubblewrap can make this host's sandboxes. A success is remembered; a failure is
    checked again next time, since the operator may install bubblewrap meanwhile."""

    def __init__(self) -> None:
        self._works = False

    def problem(self) -> str | None:
        """Why bubblewrap cannot sandbox runners here, or None when it can."""
        if self._works:
            return None
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            return "bwrap is not installed"
        root = os.geteuid() == 0
        args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        args += ["--unshare-pid", "--unshare-ipc"]
        try:
            result = subprocess.run(
                [*args, *(["--cap-drop", "ALL"] if root else []), "true"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap does not run ({e})"
        if result.returncode != 0:
            return f"bwrap cannot make a sandbox here ({result.stderr.strip()})"
        self._works = True
        return None


check = _Check()


# Devices a job may need beyond bubblewrap's minimal /dev: NVIDIA's and AMD's GPUs.
_GPU_DEVICES = ("nvidia*", "dri", "kfd")


def wrap(argv: list[str], private: Iterable[str], job_dir: Path, info_fd: int) -> list[str]:
    """``argv`` run in a sandbox that hides ``private`` (those that exist here) and the other
    jobs beside ``job_dir``; bubblewrap writes the sandbox's pid on the host to ``info_fd`` as
    JSON ({"child-pid": N})."""
    bwrap = shutil.which("bwrap") or "bwrap"
    return [bwrap, *_args(private, job_dir), "--info-fd", str(info_fd), "--", *argv]


def build_wrap(private: Iterable[str], job_dir: Path) -> list[str]:
    """The command that runs a job's environment build (uv: building a package from source
    runs its code) in the sandbox :func:`wrap` makes, from the caller's folder; for a runner
    that runs outside one (isolation ``container``)."""
    args = _args(private, job_dir)
    at = args.index("--chdir")
    del args[at : at + 2]
    return [shutil.which("bwrap") or "bwrap", *args, "--"]


def _args(private: Iterable[str], job_dir: Path) -> list[str]:
    folders, files = [], []
    for name in private:
        path = Path(name).resolve()
        if path.is_dir():
            folders.append(path)
        elif path.exists():
            files.append(path)
    job_dir = job_dir.resolve()
    # Where jobs and the runner write: temporary files, caches (Flowyard's job folders and
    # environments, uv's, pip's), and wherever the host points TMPDIR and uv's cache.
    writable = [Path("/tmp"), Path("/var/tmp"), paths.cache_dir().parent]
    writable += [Path(os.environ[k]) for k in ("TMPDIR", "UV_CACHE_DIR") if os.environ.get(k)]
    writable = [p.resolve() for p in writable if p.is_dir()]
    readable = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()]
    devices = [d for pattern in _GPU_DEVICES for d in Path("/dev").glob(pattern)]
    return bwrap_argv(
        folders,
        files,
        job_dir.parent,
        job_dir,
        readable,
        writable,
        devices,
        code=[_PACKAGE, Path(sys.prefix).resolve()],
        root=os.geteuid() == 0,
    )
