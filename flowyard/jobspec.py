"""What a job is made of besides its code: its options and its environment, as frozen values.

The submitter writes them, the workspace stores them (``flowyard_jobs.options`` and
``.environment``) and the job's runner reads them. They are plain dataclasses so the runner reads
them without pydantic (its imports come before every job's own code: see
:mod:`flowyard.runner.api`); the API's models (:mod:`flowyard.schemas`) take them as field types,
and pydantic checks a submission against these very fields, refusing any key they lack.

``from_json`` reads what the workspace stored or answered, and leaves keys it does not know: a
runner older than its workspace still reads what it needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

# What an MLproject may give as a parameter's default.
Scalar = str | bool | int | float | None


def _plain(value: Any) -> Any:
    """``value`` as JSON types (tuples as lists, enums as their values)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, StrEnum):
        return value.value
    return value


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


@dataclass(frozen=True)
class _Json:
    """The JSON form every value here shares: its fields, nested values as objects."""

    # Pydantic reads this from a stdlib dataclass used in a model: a submission's unknown key is
    # a 422 naming it, not silently dropped.
    __pydantic_config__: ClassVar[dict[str, Any]] = {"extra": "forbid"}

    def to_json(self) -> dict[str, Any]:
        result: dict[str, Any] = _plain(asdict(self))
        return result


@dataclass(frozen=True)
class Resources(_Json):
    """What a job reserves on a ray compute (NUM_CPUS, NUM_GPUS, MEMORY in bytes); None leaves
    the compute's default."""

    num_cpus: float | None = None
    num_gpus: float | None = None
    memory: float | None = None

    def __post_init__(self) -> None:
        for name, value in self.asked().items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name.upper()} must be a number of 0 or more, not {value!r}.")

    def asked(self) -> dict[str, float]:
        """The ones the job asks for, to lay over the compute's defaults."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Resources:
        return cls(
            num_cpus=_number(data.get("num_cpus")),
            num_gpus=_number(data.get("num_gpus")),
            memory=_number(data.get("memory")),
        )


@dataclass(frozen=True)
class ParameterSpec(_Json):
    """One parameter of an entry point, as its MLproject declares it."""

    type: str = "string"
    default: Scalar = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ParameterSpec:
        return cls(type=str(data.get("type", "string")), default=data.get("default"))


@dataclass(frozen=True)
class EntryPointSpec(_Json):
    """The entry point as stored with a job: what MLflow's ``EntryPoint`` is made of, so a
    re-run checks new parameters and builds its command without fetching the project again."""

    name: str
    command: str
    parameters: dict[str, ParameterSpec] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EntryPointSpec:
        return cls(
            name=str(data["name"]),
            command=str(data["command"]),
            parameters={
                str(k): ParameterSpec.from_json(v)
                for k, v in (data.get("parameters") or {}).items()
            },
        )


@dataclass(frozen=True)
class JobOptions(_Json):
    """The job's own settings from backend_config, and the command its runner runs."""

    # Seconds the entry point may run before it is stopped; None: no limit.
    timeout: float | None = None
    env_vars: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    # The entry point's shell command, built at submit; None: the runner builds it with MLflow
    # (a `path` parameter names a remote URI, which MLflow downloads first).
    command: str | None = None
    # None for a job submitted before entry points were stored with jobs.
    entry_point_spec: EntryPointSpec | None = None

    def __post_init__(self) -> None:
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"TIMEOUT must be a number of seconds over 0, not {self.timeout!r}.")
        for name in self.env_vars:
            if not name or "=" in name:
                raise ValueError(
                    f"ENV_VARS names must be non-empty and without '=', not {name!r}; rename it."
                )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOptions:
        spec = data.get("entry_point_spec")
        return cls(
            timeout=_number(data.get("timeout")),
            env_vars={str(k): str(v) for k, v in (data.get("env_vars") or {}).items()},
            resources=Resources.from_json(data.get("resources") or {}),
            command=_text(data.get("command")),
            entry_point_spec=None if spec is None else EntryPointSpec.from_json(spec),
        )


class EnvManager(StrEnum):
    """Who gives the entry point its Python."""

    LOCAL = "local"  # the compute's own Python, the runner's
    UV = "uv"  # an environment flowyard.env.builder builds from the project's environment file
    # The project's docker_env: its image with the snapshot in it (flowyard.env.containers).
    # Named as MLflow names it in the run's mlflow.project.env tag.
    DOCKER = "docker"


@dataclass(frozen=True)
class EnvironmentSpec(_Json):
    """The environment a job runs in, normalised from the project's python_env or conda.yaml
    (see :func:`flowyard.env.spec.resolve`) so any runner can build it."""

    manager: EnvManager = EnvManager.LOCAL
    # Why the compute's own Python (a local one only).
    reason: str | None = None
    # The environment file it comes from.
    source: str | None = None
    # The Python version asked for; None: the compute's.
    python: str | None = None
    build_dependencies: tuple[str, ...] = ()
    dependencies: tuple[str, ...] = ()
    # docker_env: the image, its volumes ("host:container[:options]"), the variables it sets
    # (MLproject's [NAME, VALUE]) and those copied from the submitting machine (MLproject's
    # NAME: their values travel as the job's secret ENV_VARS), and the call's docker_args as
    # engine options.
    image: str | None = None
    volumes: tuple[str, ...] = ()
    container_env: dict[str, str] = field(default_factory=dict)
    copied_env: tuple[str, ...] = ()
    run_args: tuple[str, ...] = ()

    @property
    def builds(self) -> bool:
        """Whether the runner builds an environment, rather than using its own Python."""
        return self.manager == EnvManager.UV

    @property
    def container(self) -> bool:
        """Whether the job runs in a container of the project's image."""
        return self.manager == EnvManager.DOCKER

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnvironmentSpec:
        return cls(
            manager=EnvManager(data.get("manager", EnvManager.LOCAL)),
            reason=_text(data.get("reason")),
            source=_text(data.get("source")),
            python=_text(data.get("python")),
            build_dependencies=_strings(data.get("build_dependencies")),
            dependencies=_strings(data.get("dependencies")),
            image=_text(data.get("image")),
            volumes=_strings(data.get("volumes")),
            container_env={str(k): str(v) for k, v in (data.get("container_env") or {}).items()},
            copied_env=_strings(data.get("copied_env")),
            run_args=_strings(data.get("run_args")),
        )
