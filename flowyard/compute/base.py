"""The contract every compute target keeps."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from flowyard.compute import launcher
from flowyard.jobspec import EnvironmentSpec


class ExternalState(StrEnum):
    """What a compute says of a runner it started."""

    PENDING = "pending"  # accepted, not started yet (e.g. waiting for Ray resources)
    RUNNING = "running"
    ENDED = "ended"  # exited (the runner reports the job's own result to the workspace)
    GONE = "gone"  # the compute has no such runner any more, or it died without reporting


@dataclass(frozen=True)
class RunnerCommand:
    """How to start the runner for one attempt of one job."""

    job_id: str
    attempt: int
    workspace_url: str
    resources: dict[str, Any] = field(default_factory=dict)
    # The job's own token: it works for this attempt of this job only, and ends with it.
    token: str = field(default="", repr=False)
    # The workspace host's files and folders no job may see (its database, secret key and
    # artifacts, the server's config folder): a target starting runners on that host hides them.
    private_paths: tuple[str, ...] = ()
    # Where else the runner may reach the workspace while ``workspace_url`` is away: the
    # workspace's other replicas.
    fallback_urls: tuple[str, ...] = ()
    # Whether the job runs in a container (a docker_env project): its runner drives the engine.
    container: bool = False

    @property
    def argv(self) -> list[str]:
        return launcher.runner_args(self.workspace_url, self.job_id, self.fallback_urls)

    @property
    def env(self) -> dict[str, str]:
        """Variables the runner needs besides its arguments (kept out of the process list), and
        all it gets from the workspace: never the server's own environment."""
        return launcher.token_env(self.token)


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: str
    # Engine-specific facts worth showing (Ray: nodes, CPUs, GPUs).
    resources: dict[str, Any] = field(default_factory=dict)
    # Whether the compute can run docker_env jobs, and with what (None: not checked).
    containers: str | None = None


@dataclass(frozen=True)
class ContainerPolicy:
    """A compute's settings for docker_env jobs: the engine its runners use (None: the first of
    Podman and Docker that answers) and the host folders a job's volumes may mount."""

    engine: str | None = None
    volumes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ContainerPolicy:
        return cls(
            engine=settings.get("container_engine") or None,
            volumes=tuple(str(v) for v in settings.get("container_volumes") or ()),
        )

    def runner_env(self) -> dict[str, str]:
        """What tells a shared compute's runners which engine to use and which folders volumes
        may mount (checked again on the runner's host, after symlinks)."""
        from flowyard.env.containers import ENV_ENGINE, ENV_VOLUMES

        env = {ENV_VOLUMES: os.pathsep.join(self.volumes)}
        return {**env, ENV_ENGINE: self.engine} if self.engine else env

    def describe(self) -> str:
        engine = self.engine or "Podman or Docker, whichever answers"
        where = ", ".join(self.volumes) or "none"
        return f"{engine}; volumes may mount: {where}"


class ComputeTarget(ABC):
    """Starts, watches and stops runners on one compute.

    Every method may block on the network and is called from the dispatcher's or reconciler's
    thread, never from a request handler. Errors: :class:`~flowyard.errors.ComputeUnavailableError`
    means the compute could not be reached (an infrastructure failure: the job may be retried);
    any other :class:`~flowyard.errors.FlowyardError` is final for the call.
    """

    # Whether the workspace starts this compute's runners: queues its jobs, dispatches them and
    # retries a lost one. `local`'s runner is started by the submitting machine instead.
    starts_runners = True

    def __init__(self, name: str, containers: ContainerPolicy | None = None) -> None:
        self.name = name
        self.containers = containers or ContainerPolicy()

    def check_environment(self, spec: EnvironmentSpec) -> None:
        """Refuse, before the job exists, an environment this compute must not run: on a
        compute the workspace's users share, a container's volume outside the folders it allows
        or an engine option beyond limits. Called from a request handler: no long I/O.

        Raises:
            InvalidRequestError: a sentence naming what is refused and the fix.
        """
        if spec.container:
            from flowyard.env import containers

            containers.check_shared(spec, self.name, self.containers.volumes)

    @property
    def containers_detail(self) -> str:
        """Whether and how docker_env jobs run here, for `compute show` when no health check
        says more. No I/O."""
        return (
            "yes, if the node that runs the job has an engine: its runner starts the container "
            f"there, with {self.containers.describe()}"
        )

    @abstractmethod
    def submit(self, command: RunnerCommand) -> str:
        """Start the runner for ``command``; returns the compute's id for it.

        Called once per attempt, after the dispatcher has claimed the job. Not idempotent: a
        second call starts a second runner (which the workspace refuses to let claim the job).
        """

    @abstractmethod
    def poll(self, external_id: str) -> ExternalState:
        """The state of a runner this target started. Idempotent; called by the reconciler."""

    @abstractmethod
    def cancel(self, external_id: str) -> None:
        """Stop the runner and everything it started. Idempotent: stopping a stopped runner is
        not an error."""

    @property
    @abstractmethod
    def isolation_detail(self) -> str:
        """What a job here is kept from, in one line: what `compute show` says. No I/O."""

    @abstractmethod
    def health(self) -> Health:
        """Whether the compute answers, and what it has. Idempotent; may block on the network, so
        it is called from a background thread only (``services.computes.health``)."""
