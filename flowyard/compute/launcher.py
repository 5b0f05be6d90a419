"""Starting a runner: its command line, its environment, and detaching it from whoever starts it.

The one place that knows how `python -m flowyard.runner` is started, whether by the submitting
machine (compute ``local``) or by the workspace host (compute ``process``); Ray gets the same
arguments and the job's token from here, and starts the process itself.

Light on purpose: the submitting machine imports it without the server's dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path

from flowyard import paths
from flowyard.compute import sandbox
from flowyard.credentials import ENV_TOKEN


def runner_args(workspace_url: str, job_id: str, fallbacks: Sequence[str] = ()) -> list[str]:
    """The runner's arguments after the Python command: the workspace's URL, then the URLs it
    falls back to while that one is away. The job's token is never among them: any user of the
    host can read a process's command line."""
    urls = [arg for url in (workspace_url, *fallbacks) for arg in ("--workspace", url)]
    return ["-m", "flowyard.runner", *urls, "--job", job_id]


def token_env(token: str | None) -> dict[str, str]:
    """The variables that carry the job's token to its runner."""
    return {ENV_TOKEN: token} if token else {}


def local_env(environ: Mapping[str, str], token: str | None) -> dict[str, str]:
    """A runner's environment on the submitting machine: the submitting user's own, whole.

    That runner acts for the user, on their machine, as MLflow's ``backend="local"`` would: the
    job may need their credentials, caches and tools, and holds nothing the user does not.
    """
    return {**environ, **token_env(token)}


def process_env(environ: Mapping[str, str], token: str | None) -> dict[str, str]:
    """A runner's environment on the workspace host: the allow-listed part of the server's
    (:data:`flowyard.compute.sandbox.PASSED`), never its database URL, secret key or cloud
    credentials, which a job must not see."""
    return sandbox.runner_env(environ, token_env(token))


def spawn(
    argv: Sequence[str], env: Mapping[str, str], out: Path, pass_fds: Sequence[int] = ()
) -> subprocess.Popen[bytes]:
    """Start ``argv`` detached: in a session of its own (it outlives its starter's terminal, and
    a cancel can stop its whole process group), output appended to ``out``."""
    with out.open("ab") as sink:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
            env=dict(env),
        )


def start_here(workspace_url: str, job_id: str, token: str | None) -> None:
    """Start a job's runner on this machine, detached: it outlives the caller (compute local).

    Where the OS can fork, the runner is forked from this process, which has already imported
    what the runner needs: a fresh interpreter would spend most of a second importing it again
    before the job's own code could start. The double fork leaves it a child of init, in a
    session of its own, so it neither becomes a zombie of the caller nor dies with it.
    """
    folder = paths.job_dir(job_id)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "runner.out"
    if hasattr(os, "fork"):
        _fork(workspace_url, job_id, token, out)
    else:
        argv = [sys.executable, *runner_args(workspace_url, job_id)]
        spawn(argv, local_env(os.environ, token), out)


def _fork(workspace_url: str, job_id: str, token: str | None, out_path: Path) -> None:
    import resource

    from flowyard.runner.runner import Runner  # imported before the fork, not after
    from flowyard.runner.settings import RunnerSettings

    # Read in the caller, where a bad value can still be reported to the user.
    settings = RunnerSettings.from_env(os.environ)
    with out_path.open("ab") as out:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            os.waitpid(pid, 0)  # the intermediate child exits at once
            return
        code = 1
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            # Let go of the caller's files, sockets and pipes: the runner may outlive it by hours.
            os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            # The forked runner keeps this process's environment: local_env's, token aside,
            # which Runner takes as an argument.
            code = Runner(workspace_url, job_id, token, settings).run()
        except BaseException:
            traceback.print_exc()
        finally:
            # Never return into the caller's code (or its atexit handlers) in the child.
            os._exit(code)
