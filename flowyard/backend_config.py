"""``backend_config`` as Flowyard reads it: every key checked, with a sentence naming the key and
the fix, before anything is fetched or created."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowyard.errors import InvalidRequestError
from flowyard.jobspec import EntryPointSpec, JobOptions, Resources
from flowyard.sweepspec import SweepSpec

LOCAL = "local"

# backend_config keys Flowyard reads (the Azure backend's COMPUTE and USE_CONDA first).
KNOWN_KEYS = {
    "COMPUTE": "compute target name, or 'local' for this machine",
    "USE_CONDA": "build the environment from the project's env file (true) or not (false)",
    "STREAM_OUTPUT": "print the job's log while waiting (default true)",
    "TIMEOUT": "seconds the entry point may run before it is stopped",
    "ENV_VARS": "environment variables for the entry point, as a JSON object",
    "TAGS": "extra MLflow run tags, as a JSON object",
    "PRIORITY": "higher runs sooner on a busy compute",
    "MAX_RETRIES": "times to retry after an infrastructure failure (never after the code's own)",
    "NUM_CPUS": "CPUs to reserve for the job on a ray compute",
    "NUM_GPUS": "GPUs to reserve for the job on a ray compute",
    "MEMORY": "bytes of memory to reserve for the job on a ray compute",
    "SNAPSHOT_MAX_MB": "largest snapshot allowed (default 300)",
    "SNAPSHOT_MAX_FILES": "most files a snapshot may hold (default 2000)",
    "SWEEP": "a hyperparameter sweep of the project: search_space, sampling, objective, limits, "
    "early_termination (docs/sweeps.md)",
}
# Keys MLflow itself puts into every backend_config before calling a plugin.
MLFLOW_KEYS = {
    "ENV_MANAGER",
    "SYNCHRONOUS",
    "DOCKER_ARGS",
    "STORAGE_DIR",
    "build_image",
    "docker_auth",
}
ENV_MANAGERS = {"local", "uv", "virtualenv", "conda"}


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    raise InvalidRequestError(f"backend_config {key} must be true or false, not {value!r}.")


def _number(key: str, value: Any, kind: type[int] | type[float]) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        number = None
    if number is None or (kind is int and isinstance(value, float)) or not math.isfinite(number):
        raise InvalidRequestError(f"backend_config {key} must be a number, not {value!r}.")
    return number


def _object(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = None
    if not isinstance(value, dict):
        raise InvalidRequestError(
            f'backend_config {key} must be an object of names to values, like {{"A": "1"}}.'
        )
    return {str(k): v for k, v in value.items()}


def _str_dict(key: str, value: Any) -> dict[str, str]:
    return {k: str(v) for k, v in _object(key, value).items()}


def _env_vars(value: Any) -> tuple[dict[str, str], dict[str, str]]:
    """ENV_VARS split into plain and secret ones: ``{"TOKEN": {"value": "...", "secret": true}}``
    marks a secret (stored encrypted, never shown, masked in the log)."""
    plain: dict[str, str] = {}
    secret: dict[str, str] = {}
    for name, entry in _object("ENV_VARS", value).items():
        if not isinstance(entry, dict):
            plain[name] = str(entry)
            continue
        if set(entry) - {"value", "secret"} or "value" not in entry:
            raise InvalidRequestError(
                f'ENV_VARS {name} must be a value or {{"value": "...", "secret": true}}; '
                f"got the keys {sorted(entry)}."
            )
        is_secret = _bool(f"ENV_VARS {name} secret", entry.get("secret", False))
        (secret if is_secret else plain)[name] = str(entry["value"])
    return plain, secret


def _sweep(value: Any, compute: str) -> SweepSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        path = Path(value)
        if not path.is_file():
            raise InvalidRequestError(
                f"backend_config SWEEP must be the sweep's spec, as a dict or a YAML or JSON "
                f"file; {value!r} is neither."
            )
        import yaml

        try:
            value = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as e:
            raise InvalidRequestError(f"The sweep spec {path} cannot be read ({e}).") from e
    if compute == LOCAL:
        raise InvalidRequestError(
            "A sweep runs its trials on a compute the workspace starts runners on; set "
            "backend_config COMPUTE to one (`flowyard compute list` shows them)."
        )
    return SweepSpec.parse(value)


def _docker_args(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    from flowyard.env.containers import run_args

    return run_args(_object("DOCKER_ARGS", value))


@dataclass(frozen=True)
class BackendOptions:
    """``backend_config`` as Flowyard understands it."""

    compute: str = LOCAL
    use_conda: bool = False
    env_manager: str | None = None
    stream_output: bool = True
    timeout: float | None = None
    env_vars: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict, repr=False)
    tags: dict[str, str] = field(default_factory=dict)
    priority: int = 0
    max_retries: int | None = None
    resources: dict[str, float] = field(default_factory=dict)
    snapshot_max_mb: float = 300
    snapshot_max_files: int = 2000
    # SWEEP: run the project as a sweep of trials rather than once.
    sweep: SweepSpec | None = None
    # MLflow's docker_args (the call's, or `mlflow run -A`), as engine options for a docker_env
    # project's container.
    docker_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # What no job can run with (a TIMEOUT of 0, an ENV_VARS name with '='), as the job's
        # options refuse it: refused here, before anything is fetched or created.
        try:
            self.job_options()
        except ValueError as e:
            raise InvalidRequestError(f"backend_config {e}") from e
        if self.max_retries is not None and self.max_retries < 0:
            raise InvalidRequestError(
                f"backend_config MAX_RETRIES must be 0 or more, not {self.max_retries}."
            )

    @staticmethod
    def read_file(path: Path) -> dict[str, Any]:
        """A backend_config JSON file's object."""
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise InvalidRequestError(
                f"The backend_config file {path} cannot be read as JSON ({e}); pass a dict "
                "or a .json file."
            ) from e
        if not isinstance(config, dict):
            raise InvalidRequestError(f"The backend_config file {path} must hold an object.")
        return config

    @classmethod
    def parse(cls, config: dict[str, Any] | str | os.PathLike[str] | None) -> BackendOptions:
        """Read a dict or a JSON file; an unknown key is an error that lists the known ones."""
        if config is None:
            config = {}
        elif not isinstance(config, dict):
            config = cls.read_file(Path(config))
        unknown = sorted(set(config) - set(KNOWN_KEYS) - MLFLOW_KEYS)
        if unknown:
            known = ", ".join(f"{k} ({v})" for k, v in KNOWN_KEYS.items())
            raise InvalidRequestError(
                f"Unknown backend_config key(s) {', '.join(unknown)}; the known keys are: {known}."
            )
        env_manager = config.get("ENV_MANAGER")
        if env_manager is not None and env_manager not in ENV_MANAGERS:
            raise InvalidRequestError(
                f"ENV_MANAGER {env_manager!r} is not one of {', '.join(sorted(ENV_MANAGERS))}."
            )
        compute = config.get("COMPUTE") or LOCAL
        if not isinstance(compute, str):
            raise InvalidRequestError(f"backend_config COMPUTE must be a name, not {compute!r}.")
        get = config.get
        env_vars, secret_env = _env_vars(get("ENV_VARS") or {})
        return cls(
            compute=compute,
            use_conda=_bool("USE_CONDA", get("USE_CONDA", False)),
            env_manager=env_manager,
            stream_output=_bool("STREAM_OUTPUT", get("STREAM_OUTPUT", True)),
            timeout=None if get("TIMEOUT") is None else _number("TIMEOUT", get("TIMEOUT"), float),
            env_vars=env_vars,
            secret_env=secret_env,
            tags=_str_dict("TAGS", get("TAGS") or {}),
            priority=_number("PRIORITY", get("PRIORITY", 0), int),
            max_retries=None
            if get("MAX_RETRIES") is None
            else _number("MAX_RETRIES", get("MAX_RETRIES"), int),
            resources={
                key.lower(): _number(key, get(key), float)
                for key in ("NUM_CPUS", "NUM_GPUS", "MEMORY")
                if get(key) is not None
            },
            snapshot_max_mb=_number("SNAPSHOT_MAX_MB", get("SNAPSHOT_MAX_MB", 300), float),
            snapshot_max_files=_number("SNAPSHOT_MAX_FILES", get("SNAPSHOT_MAX_FILES", 2000), int),
            sweep=_sweep(get("SWEEP"), compute),
            docker_args=_docker_args(get("DOCKER_ARGS")),
        )

    @property
    def builds_environment(self) -> bool:
        if self.env_manager is not None:
            return self.env_manager != "local"
        return self.use_conda

    def job_options(
        self, command: str | None = None, entry_point_spec: EntryPointSpec | None = None
    ) -> JobOptions:
        """What the job's runner and its re-runs need to know, stored with the job."""
        return JobOptions(
            timeout=self.timeout,
            env_vars=self.env_vars,
            resources=Resources(**self.resources),
            command=command,
            entry_point_spec=entry_point_spec,
        )
