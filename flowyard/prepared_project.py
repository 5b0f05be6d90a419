"""An MLflow project as submitted: fetched, its entry point and parameters checked by MLflow's
own rules, its command built and its environment resolved — before anything is created in the
workspace. The entry-point rules here also serve a re-run, which has no project to fetch."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from mlflow.exceptions import ExecutionException, MlflowException

from flowyard import mlflow_internals
from flowyard.env import spec as env_spec
from flowyard.errors import InvalidRequestError
from flowyard.jobspec import EntryPointSpec, EnvironmentSpec, ParameterSpec


@dataclass(frozen=True)
class PreparedProject:
    """A project fetched and checked: what a job is made of."""

    uri: str
    work_dir: Path
    entry_point: str
    parameters: dict[str, str]
    environment: EnvironmentSpec
    command: str | None
    # What rebuilds the command with other parameters, without the project.
    entry_point_spec: EntryPointSpec


def check_types(entry_point: Any, parameters: dict[str, Any]) -> None:
    for name, spec in entry_point.parameters.items():
        if name not in parameters:
            continue
        value = parameters[name]
        kind = spec.type
        if kind in ("float", "int"):
            try:
                parsed = float(value) if kind == "float" else int(str(value))
            except ValueError:
                parsed = None
            if parsed is None or (kind == "int" and isinstance(value, float)):
                raise InvalidRequestError(
                    f"Parameter {name!r} must be {'a number' if kind == 'float' else 'an integer'}"
                    f", not {value!r}; pass e.g. -P {name}={1.0 if kind == 'float' else 1}."
                )
        elif kind == "path":
            local = mlflow_internals.local_path_or_none(str(value))
            if local is not None and not os.path.exists(local):
                raise InvalidRequestError(
                    f"Parameter {name!r} names the path {value!r}, which does not exist; pass "
                    "an existing file or folder, or a URI."
                )
        elif kind == "uri" and not mlflow_internals.is_uri(str(value)):
            raise InvalidRequestError(
                f"Parameter {name!r} must be a URI with a scheme (like s3://bucket/key or "
                f"file:///path), not {value!r}."
            )


def prepare(
    uri: str,
    version: str | None,
    entry_point: str,
    parameters: dict[str, Any] | None,
    *,
    build_env: bool = False,
    searched: Collection[str] = (),
) -> PreparedProject:
    """Fetch the project (a folder, or a git URI at ``version``) and check everything a user can
    get wrong, with MLflow's own rules.

    ``searched`` are a sweep's parameters: ``parameters`` holds a stand-in for each, which must
    be there but whose type the sweep's spec checks against the entry point instead
    (:meth:`flowyard.sweepspec.SweepSpec.check_types`)."""
    parameters = dict(parameters or {})
    try:
        work_dir = mlflow_internals.fetch_project(uri, version)
    except (ExecutionException, MlflowException) as e:
        raise InvalidRequestError(
            f"The project at {uri} cannot be fetched: {e.message.rstrip('.')}; check the URI "
            "and version."
        ) from e
    try:
        project = mlflow_internals.load_project(work_dir)
    except (ExecutionException, MlflowException, yaml.YAMLError) as e:
        detail = e.message if isinstance(e, MlflowException) else str(e).replace("\n", " ")
        raise InvalidRequestError(
            f"The project at {uri} cannot be used: {detail.rstrip('.')}; fix its MLproject file."
        ) from e
    except OSError as e:
        raise InvalidRequestError(f"The project at {uri} cannot be read ({e}).") from e
    try:
        entry = project.get_entry_point(entry_point)
    except ExecutionException as e:
        known = ", ".join(mlflow_internals.entry_point_names(project)) or "none"
        raise InvalidRequestError(
            f"The project has no entry point {entry_point!r} (its entry points: {known}); pass "
            "one of those, or a .py or .sh file in the project."
        ) from e
    is_file_entry = entry_point not in mlflow_internals.entry_point_names(project)
    if is_file_entry and not (Path(work_dir) / entry_point).is_file():
        raise InvalidRequestError(
            f"The entry point file {entry_point!r} does not exist in the project {uri}."
        )
    try:
        mlflow_internals.validate_parameters(entry, parameters)
    except ExecutionException as e:
        raise InvalidRequestError(
            f"{e.message}; pass them with parameters={{...}} or -P name=value."
        ) from e
    check_types(entry, {k: v for k, v in parameters.items() if k not in searched})
    # As MLflow logs them: the entry point's parameters with defaults filled in, then the extras;
    # unquoted here, since the runner hands them to MLflow's command builder, which quotes.
    resolved = {
        name: str(parameters.get(name, spec.default)) for name, spec in entry.parameters.items()
    }
    resolved.update({str(k): str(v) for k, v in parameters.items() if k not in resolved})
    return PreparedProject(
        uri=uri,
        work_dir=Path(work_dir),
        entry_point=entry_point,
        parameters=resolved,
        environment=env_spec.resolve(project, Path(work_dir), build=build_env),
        command=build_command(entry, resolved),
        entry_point_spec=entry_point_spec(entry),
    )


def build_command(entry: Any, parameters: dict[str, str]) -> str | None:
    """The entry point's shell command, built here by MLflow's own rules (substitution, quoting,
    extra parameters appended), so the runner need not import MLflow to build it. None when a
    `path` parameter names a remote URI: the runner downloads it with MLflow, as MLflow would."""
    values = dict(parameters)
    for name, spec in entry.parameters.items():
        if spec.type != "path":
            continue
        local = mlflow_internals.local_path_or_none(values[name])
        if local is None:
            return None
        values[name] = os.path.abspath(local)
    return str(entry.compute_command(values, storage_dir=None))


def entry_point_spec(entry: Any) -> EntryPointSpec:
    """MLflow's ``EntryPoint`` as stored with a job: its name, its parameters' types and
    defaults, its command template."""
    return EntryPointSpec(
        name=entry.name,
        command=entry.command,
        parameters={
            name: ParameterSpec(type=spec.type, default=spec.default)
            for name, spec in entry.parameters.items()
        },
    )
