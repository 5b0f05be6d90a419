"""One job, from claim to final status."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import httpx

from flowyard import caches, defaults, paths
from flowyard.client import Client
from flowyard.credentials import ENV_MLFLOW_TOKEN, ENV_TOKEN
from flowyard.errors import (
    DatabaseUnavailableError,
    EnvBuildError,
    FlowyardError,
    StorageFullError,
    WorkspaceUnavailableError,
    WorkspaceUnreachableError,
)
from flowyard.retries import retrying
from flowyard.runner import system_metrics
from flowyard.runner.api import ClaimedJob, ErrorReport, RunnerApi
from flowyard.runner.logship import LogShipper
from flowyard.runner.masking import Masker
from flowyard.runner.settings import RunnerSettings
from flowyard.runner.tracebacks import parse_error
from flowyard.status import JobStatus

if TYPE_CHECKING:
    from flowyard.env.builder import Env
    from flowyard.env.containers import Engine

T = TypeVar("T")

# After SIGTERM/SIGINT, how long the runner keeps trying to report before it gives up.
SIGNAL_GRACE_S = 15.0


def _libc_prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# Looked up before any fork: the child may only make the one foreign call.
_PRCTL = _libc_prctl() if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Runner:
    def __init__(
        self,
        workspace_url: str,
        job_id: str,
        token: str | None = None,
        settings: RunnerSettings | None = None,
        fallback_urls: Sequence[str] = (),
    ) -> None:
        self.settings = settings or RunnerSettings()
        self.job_id = job_id
        # The workspace's URL, then its other replicas': a call that cannot reach one moves on
        # to the next (see _failed).
        self._urls = [u.rstrip("/") for u in (workspace_url, *fallback_urls)]
        self._at = 0
        self._switch = threading.Lock()
        self._connect(self._urls[0], token)
        if self.client.token:
            # This process acts as its job, MLflow calls included (outputs to a non-proxied store).
            os.environ[ENV_MLFLOW_TOKEN] = self.client.token
        self.dir = paths.job_dir(job_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        # Set when the entry point exits or the runner is asked to stop it.
        self._wake = threading.Event()
        self._stop_reason: tuple[JobStatus, str] | None = None
        self._signaled = threading.Event()
        self.log = LogShipper(self._append)
        self._proc: subprocess.Popen[bytes] | None = None
        self._env: Env | None = None
        # A docker_env job's engine and container, which a stop stops.
        self._engine: Engine | None = None
        self._container: str | None = None
        # The image a job that is not a docker_env one runs in (isolation ``container``).
        self._isolated_in: str | None = None
        # This runner, even where its pid is a sandbox's (the same on every runner of a host).
        self._instance = secrets.token_hex(8)

    # --- calls to the workspace, each retried with back-off -------------------------------

    def _connect(self, url: str, token: str | None) -> None:
        self.url = url
        # The runner retries each call itself (see _call), for longer and POSTs included.
        self.client = Client(url, token=token, retry_for_s=0)
        self.api = RunnerApi(self.client, self.job_id)

    def _failed(self, url: str, error: BaseException) -> None:
        """After a call to ``url`` failed with ``error``: where the replica is away (no answer,
        a proxy's 502/503/504) or cannot reach its database, the next calls go to the next URL,
        which may have what this one lacks."""
        if len(self._urls) < 2 or not isinstance(
            error, WorkspaceUnreachableError | WorkspaceUnavailableError | DatabaseUnavailableError
        ):
            return
        with self._switch:
            if self.url != url:
                return  # another of the runner's threads has moved on already
            self._at = (self._at + 1) % len(self._urls)
            self._connect(self._urls[self._at], self.client.token)

    def _call(self, fn: Callable[[], T]) -> T:
        # Every call of a runner is safe to repeat (its log appends are offset-addressed, its
        # start, beats and reports idempotent), so each is retried, POSTs included. A runner
        # told to stop by a signal still tries to report, but only briefly: it must not linger
        # for minutes because the workspace is gone too. ``fn`` reads self.api or self.client
        # anew on each try: a retry may go to another replica.
        for attempt in retrying(self.settings.retry_for_s, give_up=self._signaled):
            with attempt:
                url = self.url
                try:
                    return fn()
                except FlowyardError as e:
                    self._failed(url, e)
                    raise
        raise AssertionError("unreachable")

    def _append(self, offset: int, data: bytes, stderr: list[tuple[int, int]]) -> int:
        return self._call(lambda: self.api.append_log(offset, data, stderr))

    def _status(
        self,
        status: JobStatus,
        reason: str,
        error: ErrorReport | None = None,
        exit_code: int | None = None,
    ) -> None:
        self._call(lambda: self.api.report(status, reason, error, exit_code))

    # --- the job ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run the job to its end; returns the runner's exit code (0 when the job completed)."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            job = self._call(
                lambda: self.api.start(socket.gethostname(), os.getpid(), self._instance)
            )
        except FlowyardError as e:
            print(f"flowyard runner: cannot start job {self.job_id}: {e}", file=sys.stderr)
            self.log.close()
            return 2
        self.log.begin(job.log_size)
        try:
            final = self._run(job)
        except Exception as e:
            self.log.say(f"runner error: {e}")
            self.log.write(traceback.format_exc().encode())
            final = (
                JobStatus.FAILED,
                f"runner error: {e}",
                ErrorReport(type=type(e).__name__, message=str(e)),
                None,
            )
        status, reason, error, exit_code = final
        self.log.say(f"job {status}: {reason}")
        self.log.close()
        # The workspace writes the log it now holds whole to the run's logs/std_log.txt.
        self._status(status, reason, error, exit_code)
        # Reported: the workspace holds the log, the outputs and the snapshot, so what this
        # folder holds is spare, whatever the status. What is left (the runner's own output)
        # goes with the folder when the workspace collects garbage (docs/lifecycle.md).
        for spare in ("project", "storage"):
            shutil.rmtree(self.dir / spare, ignore_errors=True)
        self._prune_environments()
        return 0 if status == JobStatus.COMPLETED else 1

    def _prune_environments(self) -> None:
        """Let go of the job's environment, then prune this host's: those unused for
        ``ENV_UNUSED_DAYS``, and the least recently used past ``env_cache_mb``. Another job's
        environment in use is never removed; a failure here is the host's, not the job's.
        After a container job, its container (were it left) and the job images unused as long."""
        if self._engine is not None:
            from flowyard.env import containers

            try:
                containers.remove(self._engine, self.job_id)
                containers.prune(self._engine, defaults.ENV_UNUSED_DAYS)
            except (OSError, subprocess.SubprocessError) as e:
                print(f"flowyard runner: pruning job images failed: {e}", file=sys.stderr)
        if self._env is None:
            return
        self._env.release()
        from flowyard.env import builder

        try:
            builder.prune(defaults.ENV_UNUSED_DAYS, int(self.settings.env_cache_mb * 1e6))
        except OSError as e:
            print(f"flowyard runner: pruning environments failed: {e}", file=sys.stderr)

    def _run(self, job: ClaimedJob) -> tuple[JobStatus, str, ErrorReport | None, int | None]:
        from flowyard.snapshot import materialize

        self.log.say(f"job {job.id} on {socket.gethostname()}, attempt {job.attempt}")
        if job.cancel_requested:
            return JobStatus.CANCELED, "canceled before it started", None, None
        # From here on the workspace hears from this runner, and can ask it to stop.
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        project_dir = self.dir / "project"
        self.log.say(f"fetching snapshot {job.snapshot_id[:12]}")
        # Repeatable (blobs already fetched stay in the cache): retried like every other call.
        self._call(lambda: materialize(self.client, job.snapshot_id, project_dir))
        pruned = caches.prune_blob_cache(int(self.settings.blob_cache_mb * 1e6))
        if pruned.count:
            self.log.say(f"blob cache: pruned {pruned.count} blob(s), {pruned.bytes:,} bytes")
        command = self._command(job, project_dir)
        try:
            argv, env = self._entry_point(job, project_dir, command)
        except EnvBuildError as e:
            self.log.say(f"environment build failed: {e.message}")
            build_error = ErrorReport(type=type(e).__name__, message=e.message)
            return JobStatus.FAILED, "environment build failed", build_error, None
        if self._stop.is_set():
            assert self._stop_reason is not None
            return self._stop_reason[0], self._stop_reason[1], None, None
        self.log.say(f"running: {command}")
        reader = self._spawn(argv, project_dir, job, env)
        try:
            # Reported once the entry point is on its way: its start waits for no round trip.
            self._status(JobStatus.RUNNING, "entry point started")
        except BaseException:
            self._kill()
            raise
        returncode = self._wait_exit_monitored(job, reader)
        self._status(JobStatus.FINALIZING, f"entry point exited with code {returncode}")
        self._upload_outputs(project_dir / "outputs", job.artifact_uri)
        if self._stop_reason is not None:
            status, reason = self._stop_reason
            if status == JobStatus.FAILED and reason.startswith("runner received"):
                # Stopped from outside (Ray's stop_job, a process-group kill): a cancel if the
                # workspace asked for one.
                with contextlib.suppress(FlowyardError):
                    if self.api.heartbeat():
                        status, reason = JobStatus.CANCELED, "canceled by the user"
            if status == JobStatus.CANCELED:
                return status, reason, None, returncode
            kind = "Timeout" if "timed out" in reason else None
            stopped = ErrorReport(type=kind, message=reason, exit_code=returncode)
            return status, reason, stopped, returncode
        if returncode == 0:
            return JobStatus.COMPLETED, "entry point exited with code 0", None, 0
        return self._failure(returncode)

    def _failure(self, returncode: int) -> tuple[JobStatus, str, ErrorReport, int]:
        if self._engine is not None and returncode in (125, 126):
            from flowyard.env.containers import explain_failure

            # The engine's own failure, not the entry point's: what it means on this host.
            said = explain_failure(self.log.tail(), self._engine)
            if said is not None:
                self.log.say(said)
                failed = ErrorReport(type="ContainerError", message=said, exit_code=returncode)
                return JobStatus.FAILED, "the container did not start", failed, returncode
        error = parse_error(self.log.tail(), returncode)
        if self._isolated_in is not None and returncode == 127 and error.type is None:
            # The job's last words: the shell's or the loader's, not the runner's own lines.
            lines = [
                li for li in self.log.tail().splitlines() if li.strip() and "[flowyard]" not in li
            ]
            message = (
                f"A command was not found in the compute's isolation image {self._isolated_in} "
                f"({lines[-1].strip() if lines else 'exit code 127'}): the job's own, or the "
                "Python its environment links to, which the image must be able to run; use an "
                "image of this host's release with Python's libraries (docs/computes.md, "
                "Isolation container)."
            )
            self.log.say(message)
            error = ErrorReport(type="ContainerError", message=message, exit_code=returncode)
        what = f"{error.type}: {error.message}" if error.type else f"exit code {returncode}"
        return JobStatus.FAILED, f"entry point failed ({what})", error, returncode

    def _entry_point(
        self, job: ClaimedJob, project_dir: Path, command: str
    ) -> tuple[list[str], dict[str, str]]:
        """What runs ``command``, and its environment: a container of the project's image, or
        bash with the job's environment's Python first on PATH, on this host or in a container
        of the compute's isolation image."""
        if job.environment.container:
            return self._container_command(job, project_dir, command)
        bin_dir = self._environment(job)
        if self.settings.isolation_image:
            return self._isolated_command(job, project_dir, command, bin_dir)
        path = os.pathsep.join([str(bin_dir), os.environ.get("PATH", "")])
        return ["bash", "-c", command], {**os.environ, **self._job_env(job), "PATH": path}

    def _command(self, job: ClaimedJob, project_dir: Path) -> str:
        if job.options.command:
            return job.options.command
        # A `path` parameter names a remote URI: MLflow downloads it, as its local backend does.
        from flowyard import mlflow_internals

        storage = self.dir / "storage"
        storage.mkdir(exist_ok=True)
        commands = mlflow_internals.entry_point_command(
            str(project_dir), job.entry_point, job.parameters, str(storage)
        )
        return " && ".join(commands)

    def _environment(self, job: ClaimedJob) -> Path:
        """The folder whose `python` runs the entry point: the job's built environment, or the
        Python this runner runs in."""
        spec = job.environment
        if not spec.builds:
            reason = spec.reason or "no environment asked for"
            self.log.say(f"environment: this compute's Python {sys.executable} ({reason})")
            return Path(sys.executable).parent
        from flowyard.env import builder

        info = self._call(lambda: self.client.info())  # noqa: PLW0108 (the client of each try)
        mlflow_version = str(info["mlflow_version"])
        started = time.monotonic()
        self.log.say(f"environment: {builder.describe(spec)}")
        env = builder.ensure(
            spec, mlflow_version, self.log.write, self.dir / "project", self._build_wrap()
        )
        # Held until the job has ended: no pruning removes the environment it runs in.
        self._env = env
        took = time.monotonic() - started
        verb = "built" if env.built else "reusing cached"
        self.log.say(f"environment: {verb} {env.path} ({took:.3f} s)")
        return env.bin_dir

    def _build_wrap(self) -> list[str]:
        """What runs the environment's build: bubblewrap's sandbox where this runner is not in
        one, as with isolation ``container`` (a package built from source runs its code)."""
        if self.settings.isolation_image is None:
            return []
        from flowyard.compute import sandbox

        problem = sandbox.check.problem()
        if problem is not None:
            raise EnvBuildError(
                f"This compute builds job environments in bubblewrap, but {problem}; install "
                "bubblewrap (apt-get install bubblewrap)."
            )
        self.log.say("environment: any build runs in a bubblewrap sandbox")
        return sandbox.build_wrap(self.settings.private_paths, self.dir)

    def _container_command(
        self, job: ClaimedJob, project_dir: Path, command: str
    ) -> tuple[list[str], dict[str, str]]:
        """The engine command that runs ``command`` in the job's image (built, or reused when
        cached), and the engine's environment, whose job variables it passes into the container
        by name."""
        from flowyard.env import containers

        try:
            spec = containers.resolve_volumes(job.environment, os.environ)
        except FlowyardError as e:
            raise EnvBuildError(e.message) from e
        engine, name = self._container_engine(job, f"environment: {spec.image} in a container")
        started = time.monotonic()
        try:
            image = containers.job_image(engine, spec, job.snapshot_id, project_dir, self.log.write)
        except FlowyardError as e:
            raise EnvBuildError(e.message) from e
        verb = "built" if image.built else "reusing cached"
        self.log.say(f"environment: {verb} image {image.tag} ({time.monotonic() - started:.3f} s)")
        # The tags MLflow's docker backend sets on the run.
        for key, value in (("uri", image.tag), ("id", image.id)):
            self._call(functools.partial(self._set_tag, f"mlflow.docker.image.{key}", value))
        outputs = project_dir / "outputs"
        outputs.mkdir(exist_ok=True)
        job_env = self._job_env(job)
        names = [*spec.container_env, *job_env]
        argv = containers.run_argv(engine, name, job.id, image.tag, command, names, spec, outputs)
        return argv, {**os.environ, **spec.container_env, **job_env}

    def _isolated_command(
        self, job: ClaimedJob, project_dir: Path, command: str, bin_dir: Path
    ) -> tuple[list[str], dict[str, str]]:
        """The engine command that runs ``command`` in a container of the compute's isolation
        image, which sees of this host only the job's folder and, read-only, the environment
        ``bin_dir`` is in (built here as for any job) and the Python that links to."""
        from flowyard.env import containers, isolation

        image = self.settings.isolation_image
        assert image is not None
        self._isolated_in = image
        engine, name = self._container_engine(job, f"isolation: a container of {image}")
        try:
            # Pulled here, not at submit: a pull may take minutes.
            containers.check_image(engine, image, named_by="this compute's --isolation-image")
        except FlowyardError as e:
            raise EnvBuildError(e.message) from e
        storage = self.dir / "storage"
        shown = isolation.interpreter_prefixes(bin_dir) + ([storage] if storage.is_dir() else [])
        mounts = isolation.mounts(project_dir, shown)
        self.log.say(f"isolation: mounting {', '.join(mounts)}")
        (project_dir / "outputs").mkdir(exist_ok=True)
        job_env = self._job_env(job)
        argv = isolation.run_argv(
            engine, name, job.id, image, command, job_env, project_dir, mounts, bin_dir
        )
        return argv, {**os.environ, **job_env}

    def _container_engine(self, job: ClaimedJob, what: str) -> tuple[Engine, str]:
        """The engine the job's container runs on and the container's name, both kept for a
        stop, after removing what an earlier attempt of the job left; ``what`` is said first."""
        from flowyard.env import containers

        engine = containers.engine()
        self._engine = engine
        name = self._container = containers.container_name(job.id, job.attempt)
        self.log.say(f"{what} ({engine.describe()})")
        gone = containers.remove(engine, job.id)
        if gone:
            self.log.say(f"removed {len(gone)} container(s) left by an earlier attempt")
        return engine, name

    def _job_env(self, job: ClaimedJob) -> dict[str, str]:
        """What the entry point's environment adds to the runner's: the job's variables, then
        what MLflow and Flowyard set."""
        return {
            **job.options.env_vars,
            **job.secret_env,
            "MLFLOW_TRACKING_URI": self.url,
            # The job's own token, never the submitter's: user code logs to its run and no other.
            **(
                {ENV_TOKEN: self.client.token, ENV_MLFLOW_TOKEN: self.client.token}
                if self.client.token
                else {}
            ),
            "MLFLOW_RUN_ID": job.id,
            "MLFLOW_EXPERIMENT_ID": job.experiment_id,
            "PYTHONUNBUFFERED": "1",
        }

    def _spawn(
        self, argv: list[str], cwd: Path, job: ClaimedJob, env: dict[str, str]
    ) -> threading.Thread:
        """Start the entry point, and the thread that ships its output."""
        # Its own session, so a cancel stops everything it started and nothing else; and it dies
        # with the runner, so a lost runner leaves no orphan behind to be run again on retry.
        self._proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            # Apart, so the log knows which lines the job wrote to stderr.
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # A container's input is held open until the runner ends (see containers._WATCH).
            stdin=subprocess.PIPE if self._container else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (one foreign call, looked up before fork)
        )
        assert self._proc.stdout is not None and self._proc.stderr is not None
        streams = (self._proc.stdout, self._proc.stderr)
        values = list(job.secret_env.values())
        reader = threading.Thread(target=self._pump, args=(streams, values), daemon=True)
        reader.start()
        # Woken the moment the entry point exits, rather than at the next tick of a poll.
        threading.Thread(target=self._reap, args=(self._proc,), daemon=True).start()
        return reader

    def _wait_exit_monitored(self, job: ClaimedJob, reader: threading.Thread) -> int:
        """:meth:`_wait_exit`, recording MLflow's system metrics for the job's run meanwhile
        unless the job or the compute turns them off (see runner/system_metrics.py)."""
        if not system_metrics.enabled(job.options.env_vars):
            return self._wait_exit(job, reader)
        interval = system_metrics.interval_s(job.options.env_vars)
        monitor = system_metrics.SystemMetrics(job.id, self.url, interval, self.log.say)
        monitor.start()
        try:
            return self._wait_exit(job, reader)
        finally:
            monitor.finish()

    def _wait_exit(self, job: ClaimedJob, reader: threading.Thread) -> int:
        """Until the entry point exits, stopping it on a cancel, a signal or its timeout."""
        assert self._proc is not None
        timeout = job.options.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._proc.poll() is None:
            if self._stop.is_set():
                self._kill()
                break
            if deadline is not None and time.monotonic() > deadline:
                self._request_stop(JobStatus.FAILED, f"timed out after {timeout:g} s (TIMEOUT)")
                continue
            self._wake.wait(None if deadline is None else deadline - time.monotonic() + 0.01)
            self._wake.clear()
        returncode = self._proc.wait()
        reader.join()
        return returncode

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self._wake.set()

    def _pump(self, streams: tuple[Any, Any], secret_values: list[str]) -> None:
        """Read the job's stdout and stderr as they come, into the log, until both end."""
        # What the job prints goes through these before the log: its secrets come out as ***.
        # One for each stream: a masker holds back the start of a secret split between reads.
        maskers = {False: Masker(secret_values), True: Masker(secret_values)}
        with selectors.DefaultSelector() as selector:
            for stderr, stream in enumerate(streams):
                selector.register(stream.fileno(), selectors.EVENT_READ, bool(stderr))
            while selector.get_map():
                for key, _ in selector.select():
                    stderr = key.data
                    chunk = os.read(key.fd, 65536)
                    if chunk:
                        self.log.write(maskers[stderr].feed(chunk), stderr=stderr)
                        continue
                    selector.unregister(key.fd)
                    self.log.write(maskers[stderr].feed(b"", final=True), stderr=stderr)
                    self.log.end_line(stderr=stderr)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        if self._engine is not None and self._container is not None:
            from flowyard.env import containers

            # The engine's client does not stop its container when signalled; the engine does.
            containers.stop(self._engine, self._container, self.settings.kill_grace_s)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(self.settings.kill_grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return

    def _request_stop(self, status: JobStatus, reason: str) -> None:
        if self._stop_reason is None:
            self._stop_reason = (status, reason)
            self.log.say(reason)
        self._stop.set()
        self._wake.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._request_stop(JobStatus.FAILED, f"runner received {signal.Signals(signum).name}")
        # Calls in flight finish their current try; none starts a long back-off after this.
        timer = threading.Timer(SIGNAL_GRACE_S, self._signaled.set)
        timer.daemon = True
        timer.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_s):
            if self._proc is not None and self._proc.poll() is not None:
                return
            url = self.url
            try:
                cancel = self.api.heartbeat()
            except FlowyardError as e:
                self._failed(url, e)
                continue
            if cancel:
                self._request_stop(JobStatus.CANCELED, "canceled by the user")

    # --- results --------------------------------------------------------------------------

    def _upload_outputs(self, outputs: Path, artifact_uri: str) -> None:
        if self._container is not None:
            self._drop_links(outputs)
        files = sorted(p for p in outputs.rglob("*") if p.is_file()) if outputs.is_dir() else []
        if not files:
            self.log.say("no ./outputs to upload")
            return
        if artifact_uri.startswith("mlflow-artifacts:"):
            # Straight to MLflow's artifact proxy: no MLflow import in the runner.
            base = artifact_uri.removeprefix("mlflow-artifacts:").strip("/")
            for path in files:
                rel = path.relative_to(outputs).as_posix()
                self._call(functools.partial(self._put_artifact, f"{base}/outputs/{rel}", path))
        else:
            from mlflow import MlflowClient

            self._call(
                lambda: MlflowClient(self.url).log_artifacts(self.job_id, str(outputs), "outputs")
            )
        self.log.say(f"uploaded {len(files)} file(s) from ./outputs to the run's outputs/")

    def _drop_links(self, outputs: Path) -> None:
        """Remove the symbolic links a container job left in its outputs: they name paths in
        its container, and this runner, outside it, would read the host's files of that name
        (a link to /etc/shadow, or outputs itself a link to /)."""
        found = [outputs] if outputs.is_symlink() else []
        if not found and outputs.is_dir():
            for folder, dirs, files in os.walk(outputs):
                found += [Path(folder, n) for n in [*dirs, *files] if Path(folder, n).is_symlink()]
        for link in found:
            link.unlink()
        if found:
            self.log.say(
                f"left out {len(found)} symbolic link(s) in ./outputs (a container's links "
                "name its own files, not this host's): "
                + ", ".join(str(p.relative_to(outputs.parent)) for p in found[:5])
            )

    def _set_tag(self, key: str, value: str) -> None:
        url = f"{self.url}/api/2.0/mlflow/runs/set-tag"
        body = {"run_id": self.job_id, "key": key, "value": value}
        try:
            response = self.client.http.post(url, json=body)
        except httpx.HTTPError as e:
            raise WorkspaceUnreachableError(f"tagging the run failed: {e}") from e
        if response.status_code >= 500:
            raise FlowyardError(f"tagging the run: HTTP {response.status_code}")
        response.raise_for_status()

    def _put_artifact(self, artifact_path: str, path: Path) -> None:
        url = f"{self.url}/api/2.0/mlflow-artifacts/artifacts/{quote(artifact_path)}"
        with path.open("rb") as body:
            try:
                response = self.client.http.put(url, content=body)
            except httpx.HTTPError as e:
                raise WorkspaceUnreachableError(f"uploading {artifact_path} failed: {e}") from e
        if response.status_code == StorageFullError.http_status:
            # Not worth a retry: the workspace says which store is full and what to do.
            raise StorageFullError(_message(response, f"uploading {artifact_path}"))
        if response.status_code >= 500:
            raise FlowyardError(f"uploading {artifact_path}: HTTP {response.status_code}")
        response.raise_for_status()


def _message(response: httpx.Response, fallback: str) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"{fallback}: HTTP {response.status_code}"
