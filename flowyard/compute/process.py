"""`process`: runners as subprocesses of the workspace host — the embedded default."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flowyard import paths
from flowyard.compute import launcher, sandbox
from flowyard.compute.base import (
    ComputeTarget,
    ContainerPolicy,
    ExternalState,
    Health,
    RunnerCommand,
)
from flowyard.errors import ComputeError, FlowyardError, InvalidRequestError
from flowyard.jobspec import EnvironmentSpec

if TYPE_CHECKING:
    from flowyard.env.containers import Engine


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot: with the pid, an id no later process
    can take over."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class ProcessTarget(ComputeTarget):
    """Each runner is a process in its own session, so it outlives a server restart and a cancel
    can stop its whole process group. With isolation ``sandbox`` that process is bubblewrap's,
    and the runner its child in a sandbox (see :mod:`flowyard.compute.sandbox`).

    A container job's runner is never sandboxed: the engine it drives mounts file systems and
    makes cgroups, which the sandbox's dropped capabilities forbid. The job's code runs in the
    container instead, which shows it none of the host's files but what its runner mounts: for
    a docker_env job its outputs folder and the volumes the compute allows
    (:meth:`check_environment`); with isolation ``container``, for every other job, its own
    folder and its environment, in a container of ``isolation_image``."""

    def __init__(
        self,
        name: str,
        isolation: str = sandbox.SANDBOX,
        containers: ContainerPolicy | None = None,
        isolation_image: str | None = None,
    ) -> None:
        super().__init__(name, containers)
        self.isolation = isolation
        self.isolation_image = isolation_image

    @property
    def _isolates(self) -> bool:
        return self.isolation == sandbox.CONTAINER

    def _named_by(self) -> str:
        return f"compute {self.name}'s --isolation-image"

    def check_environment(self, spec: EnvironmentSpec) -> None:
        """Besides the shared compute's rules, for a job that runs in a container: an engine
        answers on this host, and its image is here or has a name a registry could have (the
        runner pulls it: a pull may take minutes, too long for a request), so a job that
        cannot start here is refused before it exists."""
        super().check_environment(spec)
        if not (spec.container or self._isolates):
            return
        from flowyard.env import containers

        if spec.container:
            containers.check_image_quickly(self._engine(), str(spec.image))
        else:
            self.check_host()

    def _engine(self) -> Engine:
        from flowyard.env import containers

        try:
            return containers.engine(self.containers.engine)
        except FlowyardError as e:
            raise InvalidRequestError(
                f"Compute {self.name} cannot run containers: {e.message}"
            ) from e

    @property
    def isolation_detail(self) -> str:
        return sandbox.describe(self.isolation, self.isolation_image)

    def _unsandboxable(self) -> str | None:
        """Why this compute cannot run a job now, as a sentence with the fix, or None."""
        if self._isolates:
            from flowyard.env import containers

            try:
                containers.engine(self.containers.engine)
            except FlowyardError as e:
                said = e.message[:1].lower() + e.message[1:].rstrip(".")
                return (
                    f"Compute {self.name} runs every job in a container, but {said}; or run "
                    f"`flowyard compute update {self.name} --isolation sandbox` to run jobs in "
                    "bubblewrap instead."
                )
            problem = sandbox.check.problem()
            if problem is None:
                return None
            return (
                f"Compute {self.name} runs every job in a container and builds job environments "
                f"in bubblewrap, but {problem}; install bubblewrap (apt-get install bubblewrap)."
            )
        problem = sandbox.check.problem() if self.isolation == sandbox.SANDBOX else None
        if problem is None:
            return None
        return (
            f"Compute {self.name} runs jobs in a sandbox, but {problem}; install bubblewrap "
            f"(apt-get install bubblewrap) or run `flowyard compute update {self.name} "
            "--isolation none` to run them unsandboxed, as the server's user."
        )

    def submit(self, command: RunnerCommand) -> str:
        problem = self._unsandboxable()
        if problem:
            raise ComputeError(problem)
        folder = paths.job_dir(command.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, *command.argv]
        # bubblewrap tells the host pid of the sandbox's first process, which lives exactly as
        # long as the runner (bwrap's own process dies at once on a SIGTERM).
        sandboxed = self.isolation == sandbox.SANDBOX and not command.container
        info, info_w = os.pipe() if sandboxed else (-1, -1)
        if info_w >= 0:
            argv = sandbox.wrap(argv, command.private_paths, folder, info_w)
        out_file = folder / f"runner-{command.attempt}.out"
        env = launcher.process_env(os.environ, command.token)
        if command.container or self._isolates:
            env.update(self.containers.runner_env())
        if self._isolates and self.isolation_image:
            from flowyard.runner.settings import ENV_ISOLATION_IMAGE, ENV_PRIVATE_PATHS

            env[ENV_ISOLATION_IMAGE] = self.isolation_image
            env[ENV_PRIVATE_PATHS] = json.dumps(command.private_paths)
        try:
            proc = launcher.spawn(argv, env, out_file, (info_w,) if info_w >= 0 else ())
        except OSError as e:
            if info >= 0:
                os.close(info)
            raise ComputeError(f"Cannot start a runner process on {self.name}: {e}.") from e
        finally:
            if info_w >= 0:
                os.close(info_w)
        # Reap it when it ends so it does not linger as a zombie in the server process.
        _reapers.add(proc)
        pid = proc.pid if info < 0 else self._sandbox_pid(info, proc, out_file)
        return f"{socket.gethostname()}:{pid}:{_start_time(pid)}"

    def _sandbox_pid(self, info: int, proc: subprocess.Popen[bytes], out_file: Path) -> int:
        with os.fdopen(info, "rb") as pipe:
            data = pipe.read()
        try:
            return int(json.loads(data)["child-pid"])
        except (ValueError, KeyError, TypeError):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            said = out_file.read_text(errors="replace").strip().splitlines()
            raise ComputeError(
                f"bubblewrap could not start the runner on {self.name} "
                f"({said[-1] if said else f'exit code {proc.returncode}'}); check that "
                "`bwrap --ro-bind / / --dev /dev --unshare-pid --proc /proc true` works on this "
                "host."
            ) from None

    def _pid(self, external_id: str) -> int | None:
        host, pid, started = external_id.rsplit(":", 2)
        if host != socket.gethostname():
            raise ComputeError(
                f"The runner {external_id} ran on {host}, not on this host; only that host's "
                "server can see it."
            )
        _reapers.poll()
        alive = _start_time(int(pid)) == started and _state(int(pid)) not in (None, "Z")
        return int(pid) if alive else None

    def poll(self, external_id: str) -> ExternalState:
        return ExternalState.RUNNING if self._pid(external_id) else ExternalState.GONE

    def cancel(self, external_id: str) -> None:
        pid = self._pid(external_id)
        if pid is not None:
            try:
                # The group the runner's session started: bubblewrap's, when sandboxed.
                os.killpg(os.getpgid(pid), signal.SIGTERM)
            except ProcessLookupError:
                return

    def health(self) -> Health:
        problem = self._unsandboxable() or self._image_problem()
        found = self._containers()
        if problem:
            return Health(False, problem, containers=found)
        return Health(
            True, f"runs on {socket.gethostname()}", {"cpus": os.cpu_count()}, containers=found
        )

    def _image_problem(self) -> str | None:
        """Why jobs cannot start in this compute's isolation image, or None (a pullable one not
        here yet included: its first job pulls it)."""
        if not self._isolates:
            return None
        try:
            self.check_host()
        except FlowyardError as e:
            return e.message
        return None

    def check_host(self) -> None:
        """With isolation ``container``: an engine answers here, and the isolation image is
        here or has a name a registry could have. No pull; blocks for an engine call or two.

        Raises:
            InvalidRequestError: one sentence naming what is missing and the fix.
        """
        if not self._isolates:
            return
        from flowyard.env import containers

        containers.check_image_quickly(self._engine(), str(self.isolation_image), self._named_by())

    def _containers(self) -> str:
        from flowyard.env import containers

        try:
            engine = containers.engine(self.containers.engine)
        except FlowyardError as e:
            return f"no: {e.message}"
        return f"yes, with {engine.describe()}; volumes may mount: " + (
            ", ".join(self.containers.volumes) or "none"
        )


class _Reapers:
    """Children the server started, waited for without blocking."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def add(self, proc: subprocess.Popen[bytes]) -> None:
        self._procs.append(proc)
        self.poll()

    def poll(self) -> None:
        self._procs = [p for p in self._procs if p.poll() is None]


_reapers = _Reapers()
