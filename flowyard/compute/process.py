"""`process`: runners as subprocesses of the workspace host — the embedded default."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from flowyard import paths
from flowyard.compute.base import ComputeTarget, ExternalState, Health, RunnerCommand
from flowyard.errors import ComputeError


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
    can stop its whole process group."""

    def submit(self, command: RunnerCommand) -> str:
        folder = paths.job_dir(command.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        try:
            with (folder / f"runner-{command.attempt}.out").open("ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, *command.argv],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                    env={**os.environ, **command.env},
                )
        except OSError as e:
            raise ComputeError(f"Cannot start a runner process on {self.name}: {e}.") from e
        # Reap it when it ends so it does not linger as a zombie in the server process.
        _reapers.add(proc)
        return f"{socket.gethostname()}:{proc.pid}:{_start_time(proc.pid)}"

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
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                return

    def health(self) -> Health:
        return Health(True, f"runs on {socket.gethostname()}", {"cpus": os.cpu_count()})


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
