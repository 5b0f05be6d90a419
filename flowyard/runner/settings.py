"""The runner's tunables, read once from the environment where the runner starts.

A dataclass, not a pydantic model: the runner starts for every job and imports as little as it
can.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from flowyard import defaults
from flowyard.errors import ConfigError

ENV_HEARTBEAT_S = "FLOWYARD_HEARTBEAT_S"
ENV_KILL_GRACE_S = "FLOWYARD_KILL_GRACE_S"
ENV_RETRY_FOR_S = "FLOWYARD_RETRY_FOR_S"
ENV_BLOB_CACHE_MB = "FLOWYARD_BLOB_CACHE_MB"
ENV_ENV_CACHE_MB = "FLOWYARD_ENV_CACHE_MB"
# Set by a compute with isolation ``container``: the image its jobs run in.
ENV_ISOLATION_IMAGE = "FLOWYARD_ISOLATION_IMAGE"
# Set with it: the workspace host's paths no job may see (a JSON list), which the runner hides
# from the job's environment build, run in bubblewrap since the runner itself is not.
ENV_PRIVATE_PATHS = "FLOWYARD_PRIVATE_PATHS"


def _number(
    environ: Mapping[str, str], name: str, default: float, *, zero_allowed: bool, fix: str
) -> float:
    """``environ[name]`` as a finite number, positive (or 0 where ``zero_allowed``), or
    ``default`` when it is unset; else a ConfigError saying to set it to ``fix``."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    fits = value >= 0 if zero_allowed else value > 0
    if not fits or value == float("inf"):
        raise ConfigError(f"${name} is {raw!r}; set it to {fix}.")
    return value


def seconds(environ: Mapping[str, str], name: str, default: float) -> float:
    """``environ[name]`` as a positive number of seconds, or ``default`` when it is unset."""
    return _number(environ, name, default, zero_allowed=False, fix="a positive number of seconds")


def megabytes(environ: Mapping[str, str], name: str, default: float) -> float:
    """``environ[name]`` as a number of MB (0 or more), or ``default`` when it is unset."""
    return _number(environ, name, default, zero_allowed=True, fix="a number of MB, 0 or more")


@dataclass(frozen=True)
class RunnerSettings:
    """How a runner paces itself.

    Attributes:
        heartbeat_s: Between two heartbeats (the workspace's heartbeat timeout is many of these).
        kill_grace_s: After SIGTERM, how long the entry point may take to stop before SIGKILL.
        retry_for_s: How long a call to the workspace is retried before the job's call fails.
        blob_cache_mb: The bound this host's blob cache is pruned back to after each
            materialization, in MB.
        env_cache_mb: The bound this host's job environments are pruned back to after each
            job, in MB (besides those unused for ``defaults.ENV_UNUSED_DAYS``).
        isolation_image: The image a job that is not a docker_env one runs in, its environment
            built here and mounted (a compute with isolation ``container``); None: on the host.
        private_paths: With ``isolation_image``, what the environment's build must not see.
    """

    heartbeat_s: float = defaults.RUNNER_HEARTBEAT_S
    kill_grace_s: float = defaults.RUNNER_KILL_GRACE_S
    retry_for_s: float = defaults.RUNNER_RETRY_FOR_S
    blob_cache_mb: float = defaults.BLOB_CACHE_MB
    env_cache_mb: float = defaults.ENV_CACHE_MB
    isolation_image: str | None = None
    private_paths: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RunnerSettings:
        return cls(
            heartbeat_s=seconds(environ, ENV_HEARTBEAT_S, defaults.RUNNER_HEARTBEAT_S),
            kill_grace_s=seconds(environ, ENV_KILL_GRACE_S, defaults.RUNNER_KILL_GRACE_S),
            retry_for_s=seconds(environ, ENV_RETRY_FOR_S, defaults.RUNNER_RETRY_FOR_S),
            blob_cache_mb=megabytes(environ, ENV_BLOB_CACHE_MB, defaults.BLOB_CACHE_MB),
            env_cache_mb=megabytes(environ, ENV_ENV_CACHE_MB, defaults.ENV_CACHE_MB),
            isolation_image=environ.get(ENV_ISOLATION_IMAGE, "").strip() or None,
            private_paths=_paths(environ, ENV_PRIVATE_PATHS),
        )


def _paths(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = environ.get(name, "").strip()
    try:
        found = json.loads(raw) if raw else []
    except ValueError:
        found = None
    if not isinstance(found, list) or not all(isinstance(p, str) for p in found):
        raise ConfigError(f"${name} is {raw!r}; set it to a JSON list of paths.")
    return tuple(found)
