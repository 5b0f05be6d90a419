"""The container a process compute with isolation ``container`` runs a job in when the job is
not a docker_env one: a container of the compute's image that sees of the host only the job's
folder and, read-only, the environment built for it on the host and the Python that links to,
each at the same path. The engine, its host facts and the container's lifecycle are
:mod:`flowyard.env.containers`'s, shared with docker_env jobs.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path

from flowyard.env.containers import Engine, container_argv
from flowyard.errors import EnvBuildError

# Prefixes every image has of its own: an interpreter there is the host distribution's, which the
# image's own at the same path stands in for (mounting the host's would hide the image's).
SYSTEM_PREFIXES = frozenset({"/", "/usr", "/usr/local"})
# What the container may do beyond the engine's defaults: less. A job needs no capability to run
# Python in its folder, and root's (raw sockets on the host's network, chown) are what it must
# not have.
CONFINED = ("--cap-drop", "all", "--security-opt", "no-new-privileges")


def interpreter_prefixes(bin_dir: Path) -> list[Path]:
    """The folders the Python in ``bin_dir`` runs from: its own prefix and, for a virtual
    environment, the prefix of the interpreter its ``python`` links to (``home`` in its
    ``pyvenv.cfg``); each as it really is here (links followed), the image's own system
    prefixes left out."""
    prefix = bin_dir.parent
    found = [prefix.resolve()]
    try:
        config = (prefix / "pyvenv.cfg").read_text()
    except OSError:
        config = ""
    for line in config.splitlines():
        key, eq, value = line.partition("=")
        if eq and key.strip() == "home" and value.strip():
            found.append(Path(value.strip()).resolve().parent)
    return [p for p in dict.fromkeys(found) if str(p) not in SYSTEM_PREFIXES]


def mounts(project_dir: Path, read_only: Iterable[Path]) -> list[str]:
    """``-v`` values for a job in a compute's isolation container, each folder at the same path
    as on the host (the environment's absolute links and scripts then work unchanged): its
    project folder writable (the job's own copy of its snapshot, which it writes as it would on
    the host), then the ``read_only`` folders (its environment, the interpreter that links to,
    MLflow's downloads), a folder inside another left to that one.

    Raises:
        EnvBuildError: a folder's path has a ``:``, which an engine's ``-v`` cannot mount.
    """
    project = project_dir.resolve()
    folders = list(dict.fromkeys(p.resolve() for p in read_only if p.resolve() != project))
    kept = [p for p in folders if not any(p != o and p.is_relative_to(o) for o in folders)]
    for path in (project, *kept):
        if ":" in str(path):
            raise EnvBuildError(
                f"The folder {path} has a ':' in its path, which a container cannot mount; "
                "move it (or the cache folder, $XDG_CACHE_HOME) to a path without one."
            )
    return [f"{project}:{project}", *(f"{p}:{p}:ro" for p in kept)]


def run_argv(
    found: Engine,
    name: str,
    job_id: str,
    image: str,
    command: str,
    env_names: Iterable[str],
    project_dir: Path,
    mounts: Sequence[str],
    bin_dir: Path,
) -> list[str]:
    """The engine command that runs a job's ``command`` in a compute's isolation container of
    ``image``: in its project folder, ``bin_dir`` (its environment's) first on the image's
    PATH, as on the host; with no capabilities (the host's network is shared: no raw sockets
    on it) and no way to gain any (set-user-id files)."""
    path_first = f'PATH={shlex.quote(str(bin_dir))}:"$PATH"; export PATH; {command}'
    workdir = str(project_dir.resolve())
    return container_argv(
        found, name, job_id, image, path_first, env_names, workdir, mounts, CONFINED
    )
