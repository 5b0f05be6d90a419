"""Running a job in a container: the engine (Podman or Docker, through its command line), this
host's facts about it, the job's image (the project's image with the snapshot in it, cached by
content) and the engine command that runs the entry point. The container a compute with
isolation ``container`` runs every other job in is :mod:`flowyard.env.isolation`'s.

The runner imports this for a container job only; the submitting side and the server use
its checks. Every engine call is a subprocess: no engine SDK is needed anywhere.

Host facts (what a stock engine gets wrong on some machines) are all in :func:`host_facts`, and
what an engine's failure means on such a host in :func:`explain_failure`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO

from flowyard import paths
from flowyard.errors import EnvBuildError, InvalidRequestError
from flowyard.jobspec import EnvironmentSpec

ENGINES = ("podman", "docker")
# Set on a runner by its compute (`--container-engine`), or by the operator: the engine to use
# rather than the first that works.
ENV_ENGINE = "FLOWYARD_CONTAINER_ENGINE"
# Set on a shared compute's runners: the host folders its jobs' volumes may mount, checked again
# where the volume is mounted, after symlinks (os.pathsep between folders).
ENV_VOLUMES = "FLOWYARD_CONTAINER_VOLUMES"
# Where the project's code lives in the image, as MLflow's docker backend puts it.
WORKDIR = "/mlflow/projects/code"
# Labels on what Flowyard makes, so it finds (and prunes) its own and nothing else.
LABEL_IMAGE = "flowyard.job-image"
LABEL_JOB = "flowyard.job"
IMAGE_REPO = "localhost/flowyard-job"
# Exit codes of `run` that are the engine's, not the entry point's: 125 the engine failed,
# 126 the command cannot be run, 127 it was not found in the image.
ENGINE_CODES = {125: "the engine could not start the container", 126: "not executable", 127: ""}
# docker_args a job on a shared compute may pass: limits and the like. Anything else (privileges,
# devices, the host's namespaces, mounts beside the checked volumes) is refused there.
SAFE_ARGS = frozenset(
    {"cpus", "cpu-shares", "cpuset-cpus", "m", "memory", "memory-swap", "shm-size", "gpus"}
    | {"pids-limit", "e", "env", "u", "user", "w", "workdir", "tmpfs", "init"}
)
VOLUME_ARGS = frozenset({"v", "volume"})


@dataclass(frozen=True)
class Engine:
    """An engine that answers on this host, with the host's facts applied to each call."""

    name: str
    path: str
    version: str
    # Options before the subcommand (Podman's --runtime), and for every `run`.
    global_args: tuple[str, ...] = ()
    run_args: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def argv(self, *args: str) -> list[str]:
        return [self.path, *self.global_args, *args]

    def call(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def call_with_input(
        self, *args: str, stdin: IO[bytes] | None, timeout: float = 600
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.argv(*args), capture_output=True, stdin=stdin, timeout=timeout, check=False
        )

    def describe(self) -> str:
        facts = f" ({'; '.join(self.notes)})" if self.notes else ""
        return f"{self.name} {self.version}{facts}"


# --- host facts ----------------------------------------------------------------------------


def cgroup_layout(root: Path = Path("/sys/fs/cgroup")) -> str:
    """``unified`` (cgroup v2 only), ``hybrid`` (v1 controllers with a v2 tree beside them) or
    ``legacy`` (v1 only)."""
    if (root / "cgroup.controllers").exists():
        return "unified"
    return "hybrid" if (root / "unified").is_dir() else "legacy"


def host_facts(name: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """What ``name`` needs on this host: its global options, its `run` options and a note on
    each, for the log and `compute show`. The one place that knows a host's quirks:

    - Podman's default runtime ``crun`` refuses cgroup v1 and hybrid hosts (it creates the
      container's cgroup in the v2 tree it cannot use); ``runc`` runs there.
    - An engine gives a container default limits of its own (Podman as root: 1048576 open
      files, and as many processes as its own limit), which the runtime fails to apply where
      they exceed the hard limits of the process starting it ("error setting rlimit ...:
      operation not permitted"). The container gets the runner's own limits instead, what a
      process job would have, processes capped at the kernel's pid_max, which Podman caps its
      own at.
    - ``--network host``: the job reaches the workspace where its runner does (a workspace on
      127.0.0.1 included, which a container's own network cannot reach), and nothing more.
    """
    global_args: list[str] = []
    notes: list[str] = []
    if name == "podman" and cgroup_layout() != "unified":
        if shutil.which("runc"):
            global_args += ["--runtime", "runc"]
            notes.append(f"runc: cgroups are {cgroup_layout()} here, which crun refuses")
        else:
            notes.append(f"cgroups are {cgroup_layout()} here: crun needs runc beside it")
    run_args = ["--network", "host"]
    for ulimit, which in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = _limits(which, _pid_max() if ulimit == "nproc" else None)
        if hard is not None:
            run_args += ["--ulimit", f"{ulimit}={soft}:{hard}"]
            notes.append(f"{ulimit} {soft}:{hard}")
    return tuple(global_args), tuple(run_args), tuple(notes)


def _pid_max() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return None


def _limits(which: int, cap: int | None) -> tuple[int, int | None]:
    """This process's soft and hard limit ``which``, each at most ``cap``; hard None when
    neither bounds it (the engine's default then fits)."""
    soft, hard = resource.getrlimit(which)
    bounds = [b for b in (hard, cap) if b is not None and b != resource.RLIM_INFINITY]
    if not bounds:
        return soft, None
    top = min(bounds)
    return (top if soft == resource.RLIM_INFINITY else min(soft, top)), top


def explain_failure(output: str, engine: Engine) -> str | None:
    """What an engine's own failure (exit code 125) means on this host, with what to set; None
    when its output says nothing known."""
    low = output.lower()
    if "rlimit" in low and "operation not permitted" in low:
        asked = " ".join(a for a in engine.run_args if "=" in a)
        return (
            f"{engine.name} could not apply the container's limits ({asked or 'its defaults'}),"
            " which exceed the hard limits it runs under here; raise those (`ulimit -Hn`, "
            "`ulimit -Hu`; LimitNOFILE and LimitNPROC in the runner's service) or set lower "
            'ones in containers.conf, e.g. default_ulimits = ["nofile=1024:1024", '
            '"nproc=4096:4096"]'
        )
    if "crun" in low and "cgroup" in low:
        return (
            f"{engine.name}'s runtime crun cannot use this host's {cgroup_layout()} cgroups; "
            'install runc (apt-get install runc) or set runtime = "runc" in containers.conf'
        )
    if "permission denied" in low and "docker.sock" in low:
        return (
            "docker's daemon refuses this user; add the user to the docker group or name "
            "podman as the compute's engine (--container-engine podman)"
        )
    return None


# --- the engine ----------------------------------------------------------------------------


def _probe(name: str) -> tuple[Engine | None, str]:
    """``name`` as an :class:`Engine` if it answers here, else why not."""
    path = shutil.which(name)
    if path is None:
        return None, f"{name} is not installed"
    global_args, run_args, notes = host_facts(name)
    # `version` asks the daemon too (Docker's): a client without one is no engine.
    try:
        result = subprocess.run(
            [path, *global_args, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{name} does not answer ({e})"
    if result.returncode != 0 or not result.stdout.strip():
        said = (result.stderr.strip().splitlines() or ["no answer"])[-1]
        return None, f"{name} does not work ({said})"
    version = result.stdout.strip()
    return Engine(name, path, version, global_args, run_args, notes), ""


@cache
def _engine(named: str | None) -> Engine:
    reasons = []
    for name in (named,) if named else ENGINES:
        found, why = _probe(name)
        if found is not None:
            return found
        reasons.append(why)
    if named:
        fix = f"install {named} on this host, or name another engine for the compute"
    else:
        fix = "install podman (apt-get install podman runc) or start Docker's daemon"
    raise EnvBuildError(f"No container engine works on this host ({'; '.join(reasons)}); {fix}.")


def engine(named: str | None = None, environ: Mapping[str, str] = os.environ) -> Engine:
    """The engine to use here: ``named``, else ``$FLOWYARD_CONTAINER_ENGINE``, else the first
    of Podman and Docker that answers. A working engine is remembered; a missing one is looked
    for again next time (the operator may install one meanwhile).

    Raises:
        EnvBuildError: none answers; the message says which were tried and what to install.
    """
    named = named or environ.get(ENV_ENGINE) or None
    if named is not None and named not in ENGINES:
        raise EnvBuildError(
            f"Unknown container engine {named!r} (${ENV_ENGINE} or the compute's "
            f"--container-engine); use one of {', '.join(ENGINES)}."
        )
    try:
        return _engine(named)
    except EnvBuildError:
        _engine.cache_clear()
        raise


# --- checks before anything runs ---------------------------------------------------------------


def run_args(docker_args: Mapping[str, object]) -> tuple[str, ...]:
    """MLflow's ``docker_args`` ({"memory": "1g", "init": True}) as engine options, the way
    MLflow's docker backend turns them."""
    args: list[str] = []
    for name, value in docker_args.items():
        flag = f"-{name}" if len(name) == 1 else f"--{name}"
        if value is True:
            args.append(flag)
        elif value is False or value is None:
            continue
        else:
            args += [flag, str(value)]
    return tuple(args)


def _volume_host_path(volume: str) -> str:
    return volume.split(":", 1)[0]


def check_shared(spec: EnvironmentSpec, compute: str, allowed: Iterable[str]) -> None:
    """Refuse what a container job may not do on a compute shared by the workspace's users: a
    volume outside the folders the compute allows, engine options beyond limits.

    Raises:
        InvalidRequestError: one sentence naming the volume or option and the fix.
    """
    roots = [PurePosixPath(os.path.normpath(r)) for r in allowed]
    volumes = list(spec.volumes)
    args = list(spec.run_args)
    while args:
        flag = args.pop(0)
        name = flag.lstrip("-").split("=", 1)[0]
        value = flag.split("=", 1)[1] if "=" in flag else None
        takes_value = bool(args) and not args[0].startswith("-")
        if value is None and takes_value:
            value = args.pop(0)
        if name in VOLUME_ARGS and value is not None:
            volumes.append(value)
        elif name not in SAFE_ARGS:
            raise InvalidRequestError(
                f"docker_args {name!r} is not allowed on compute {compute}, which is shared; "
                f"use only {', '.join(sorted(SAFE_ARGS | VOLUME_ARGS))}, or run on COMPUTE local."
            )
    for volume in volumes:
        host = _volume_host_path(volume)
        path = PurePosixPath(os.path.normpath(host))
        if not host.startswith("/") or not any(path == r or r in path.parents for r in roots):
            where = ", ".join(map(str, roots)) or "none"
            raise InvalidRequestError(
                f"The volume {volume!r} mounts {host}, which compute {compute} does not allow "
                f"(allowed folders: {where}); have an admin run `flowyard compute update "
                f"{compute} --container-volume FOLDER`, or drop the volume."
            )


def _resolved(volume: str) -> str:
    host, _, rest = volume.partition(":")
    return f"{os.path.realpath(host)}:{rest}" if host.startswith("/") else volume


def resolve_volumes(spec: EnvironmentSpec, environ: Mapping[str, str]) -> EnvironmentSpec:
    """``spec`` with each volume's host folder as it really is here (symlinks followed: a link
    a job left in an allowed folder must not mount what it points to), checked again against
    the compute's folders when its runner was given them (:data:`ENV_VOLUMES`).

    Raises:
        InvalidRequestError: a volume resolves outside those folders.
    """
    args = list(spec.run_args)
    for i, arg in enumerate(args):
        name, eq, value = arg.lstrip("-").partition("=")
        if name in VOLUME_ARGS and eq:
            args[i] = f"{arg.split('=', 1)[0]}={_resolved(value)}"
        elif arg.lstrip("-") in VOLUME_ARGS and i + 1 < len(args):
            args[i + 1] = _resolved(args[i + 1])
    resolved = replace(
        spec, volumes=tuple(_resolved(v) for v in spec.volumes), run_args=tuple(args)
    )
    if ENV_VOLUMES in environ:
        roots = [r for r in environ[ENV_VOLUMES].split(os.pathsep) if r]
        check_shared(resolved, "this compute", [os.path.realpath(r) for r in roots])
    return resolved


def copied_env(spec: EnvironmentSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the variables the MLproject copies from the submitting machine
    (``environment: [NAME]``), as MLflow copies them.

    Raises:
        InvalidRequestError: one is not set here.
    """
    missing = [name for name in spec.copied_env if name not in environ]
    if missing:
        raise InvalidRequestError(
            f"The MLproject's docker_env copies {', '.join(missing)} from this machine's "
            "environment, which does not set it; set it before submitting, or give its value "
            "in the MLproject as [NAME, VALUE]."
        )
    return {name: environ[name] for name in spec.copied_env}


# An image reference as Docker's reference grammar has it ([registry[:port]/]path[:tag][@digest]),
# or an image id: never a string an engine could read as an option.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_REF = re.compile(
    rf"(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
_IMAGE_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}")


def check_image_name(image: str, named_by: str) -> None:
    """Refuse what is not an image reference.

    Raises:
        InvalidRequestError: one sentence naming the image, who named it and an example.
    """
    if not (_IMAGE_REF.fullmatch(image) or _IMAGE_ID.fullmatch(image)):
        raise InvalidRequestError(
            f"{image!r} ({named_by}) is not an image name; give one such as "
            "docker.io/library/python:3.11-slim or localhost/my-image:1."
        )


def pullable(image: str) -> bool:
    """Whether an engine could pull ``image`` from a registry: not an image id, and not in
    ``localhost/``, where Podman keeps what was built or imported here."""
    return not (_IMAGE_ID.fullmatch(image) or image.startswith("localhost/"))


def _missing(found: Engine, image: str, named_by: str, said: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"The image {image!r} named by {named_by} is not on this host and cannot be pulled "
        f"({said}); build or load it here (`{found.name} images` lists what is), or fix the name."
    )


def check_image(
    found: Engine, image: str, *, pull: bool = True, named_by: str = "the MLproject's docker_env"
) -> str:
    """The id of ``image`` on this host, pulled first when it is not here and ``pull``.

    Raises:
        InvalidRequestError: it is not an image name, or is not here and cannot be pulled.
    """
    check_image_name(image, named_by)
    image_id = _image_id(found, image)
    if image_id is None and pull:
        result = found.call("pull", "--quiet", image, timeout=600)
        image_id = _image_id(found, image) if result.returncode == 0 else None
        said = (result.stderr.strip().splitlines() or ["no answer"])[-1]
    else:
        said = "not pulled"
    if image_id is None:
        raise _missing(found, image, named_by, said)
    return image_id


def check_image_quickly(
    found: Engine, image: str, named_by: str = "the MLproject's docker_env"
) -> None:
    """What a request handler may check of ``image`` without pulling it (a pull may take
    minutes): it is here, or its name is one a registry could have; the runner pulls it, and
    fails its job with :func:`check_image`'s sentence when that fails.

    Raises:
        InvalidRequestError: it is not here and no registry could have it.
    """
    check_image_name(image, named_by)
    if _image_id(found, image) is None and not pullable(image):
        raise _missing(found, image, named_by, "a localhost/ name or an id is never pulled")


def _image_id(found: Engine, image: str) -> str | None:
    result = found.call("image", "inspect", "--format", "{{.Id}}", image)
    return result.stdout.strip() or None if result.returncode == 0 else None


# --- the job's image -------------------------------------------------------------------------


def image_key(base_id: str, snapshot_id: str, spec: EnvironmentSpec) -> str:
    """What the job's image is made of: the base image's content, the snapshot and the spec."""
    identity = {"base": base_id, "snapshot": snapshot_id, "image": spec.image, "workdir": WORKDIR}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _uses() -> Path:
    return paths.cache_dir() / "images"


@dataclass(frozen=True)
class JobImage:
    tag: str
    id: str
    built: bool


def job_image(
    found: Engine,
    spec: EnvironmentSpec,
    snapshot_id: str,
    project_dir: Path,
    log: Callable[[bytes], None],
) -> JobImage:
    """The project's image with the snapshot copied in at :data:`WORKDIR`: reused when one of
    the same content is here, else built (``FROM`` the base image's id, so a re-tagged base
    makes a new image, never a stale one)."""
    assert spec.image is not None
    base_id = check_image(found, spec.image)
    key = image_key(base_id, snapshot_id, spec)
    tag = f"{IMAGE_REPO}:{key}"
    use = _uses() / key
    use.parent.mkdir(parents=True, exist_ok=True)
    use.touch()  # last use, for pruning
    if (image_id := _image_id(found, tag)) is not None:
        return JobImage(tag, image_id, built=False)
    build_dir = project_dir.parent / "image"
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir()
    (build_dir / "Containerfile").write_text(
        f"FROM {base_id}\nCOPY project/ {WORKDIR}/\nWORKDIR {WORKDIR}\n"
        f'LABEL {LABEL_IMAGE}="{key}"\n'
    )
    # The snapshot is a hard-linked copy: the build context holds no second copy of the files.
    shutil.copytree(project_dir, build_dir / "project", copy_function=_link_or_copy)
    proc = subprocess.Popen(
        found.argv("build", "--quiet", "--network", "none", "-t", tag, str(build_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    output = b""
    while chunk := os.read(proc.stdout.fileno(), 65536):
        log(chunk)
        output = (output + chunk)[-8192:]
    code = proc.wait()
    shutil.rmtree(build_dir, ignore_errors=True)
    if code != 0:
        said = output.decode(errors="replace").strip().splitlines()
        raise EnvBuildError(
            f"Building the job's image from {spec.image} failed ({said[-1] if said else code}); "
            "the job log holds the engine's output."
        )
    return JobImage(tag, _image_id(found, tag) or "", built=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def container_name(job_id: str, attempt: int) -> str:
    return f"flowyard-{job_id}-{attempt}"


def run_argv(
    found: Engine,
    name: str,
    job_id: str,
    image: str,
    command: str,
    env_names: Iterable[str],
    spec: EnvironmentSpec,
    outputs: Path,
) -> list[str]:
    """The engine command that runs ``command`` in a docker_env job's image: at
    :data:`WORKDIR`, with the runner's ``./outputs`` folder mounted (the runner uploads what the
    job writes there as for any job), the MLproject's volumes and the call's docker_args."""
    mounts = [f"{outputs}:{WORKDIR}/outputs", *spec.volumes]
    return container_argv(
        found, name, job_id, image, command, env_names, WORKDIR, mounts, spec.run_args
    )


def container_argv(
    found: Engine,
    name: str,
    job_id: str,
    image: str,
    command: str,
    env_names: Iterable[str],
    workdir: str,
    mounts: Sequence[str],
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The engine command that runs ``command`` in a container ``name`` of ``image``, labelled
    as job ``job_id``'s, with the host's facts, ``mounts`` (``-v`` values) and ``extra_args``.

    Variables are passed by name only (``-e NAME``): the engine reads their values from its own
    environment, so no secret is on a command line."""
    argv = found.argv("run", "--rm", "--name", name, "--label", f"{LABEL_JOB}={job_id}")
    argv += [*found.run_args, "--workdir", workdir]
    for mount in mounts:
        argv += ["-v", mount]
    for env_name in sorted(set(env_names)):
        argv += ["-e", env_name]
    argv += ["--interactive", *extra_args, image, "sh", "-c", _WATCH, "flowyard", command]
    return argv


# The container's first process: it runs the command (in bash where the image has it, as the
# runner runs it elsewhere), passes a stop on to it, and ends the container when its standard
# input closes, which happens when the engine's client goes (the runner died, and the client
# with it): a killed runner leaves no container behind. The runner holds that input open and
# never writes to it. A background list's input is /dev/null before its own redirections, hence
# the copy on descriptor 3.
_WATCH = (
    'exec 3<&0; shell=$(command -v bash || echo sh); "$shell" -c "$1" </dev/null 3<&- & job=$!; '
    "trap 'kill -TERM $job 2>/dev/null' TERM INT; "
    "(cat <&3 >/dev/null; kill -KILL -1) >/dev/null 2>&1 & "
    'while :; do wait "$job"; code=$?; kill -0 "$job" 2>/dev/null || exit "$code"; done'
)


def remove(found: Engine, job_id: str) -> list[str]:
    """Stop and remove every container of job ``job_id`` on this host (an earlier attempt's
    included); the names of those removed."""
    listed = found.call("ps", "-a", "-q", "--filter", f"label={LABEL_JOB}={job_id}")
    ids = listed.stdout.split()
    if ids:
        found.call("rm", "-f", "-t", "5", *ids)
    return ids


def stop(found: Engine, name: str, grace_s: float) -> None:
    """Stop the container ``name`` (SIGTERM, then SIGKILL after ``grace_s``) and remove it."""
    found.call("rm", "-f", "-t", str(max(int(grace_s), 1)), name, timeout=grace_s + 60)


# --- pruning -----------------------------------------------------------------------------------


def prune(found: Engine, unused_days: float | None, *, dry_run: bool = False) -> list[str]:
    """Remove the job images this cache folder's runners have not used for ``unused_days``
    (all job images when None); never one a container runs from (the engine refuses to remove
    it). Returns the tags removed."""
    listed = found.call(
        "images", "--filter", f"label={LABEL_IMAGE}", "--format", "{{.Repository}}:{{.Tag}}"
    )
    cutoff = None if unused_days is None else time.time() - unused_days * 86400
    removed = []
    for tag in listed.stdout.split():
        if not tag.startswith(f"{IMAGE_REPO}:"):
            continue
        use = _uses() / tag.rsplit(":", 1)[1]
        # An image another cache folder's runners use (no record here) is theirs to age out.
        if cutoff is not None and (not use.exists() or use.stat().st_mtime >= cutoff):
            continue
        if dry_run:
            removed.append(tag)
        elif found.call("rmi", tag).returncode == 0:
            use.unlink(missing_ok=True)
            removed.append(tag)
    return removed


def prune_here(unused_days: float | None, *, dry_run: bool = False) -> list[str]:
    """:func:`prune` with this host's engine; nothing where none answers (no job image can be
    here then, or none that Flowyard can reach)."""
    try:
        found = engine()
    except EnvBuildError:
        return []
    return prune(found, unused_days, dry_run=dry_run)
