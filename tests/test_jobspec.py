"""A job's contract types: one JSON form for the API and the database, the same refusals for a
submit and for backend_config, old rows still read, and no pydantic in the runner."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from flowyard.backend_config import BackendOptions
from flowyard.errors import InvalidRequestError
from flowyard.jobspec import (
    EntryPointSpec,
    EnvironmentSpec,
    EnvManager,
    JobOptions,
    ParameterSpec,
    Resources,
)
from flowyard.schemas import JobSubmit

FULL = JobOptions(
    timeout=60.0,
    env_vars={"PLAIN": "yes"},
    resources=Resources(num_cpus=2.0, memory=1e9),
    command="python main.py --alpha 0.5",
    entry_point_spec=EntryPointSpec(
        name="main",
        command="python main.py --alpha {alpha}",
        parameters={
            "alpha": ParameterSpec(type="float", default=0.5),
            "flag": ParameterSpec(default=True),
            "n": ParameterSpec(type="int", default=3),
            "data": ParameterSpec(type="path"),
        },
    ),
)
UV = EnvironmentSpec(
    manager=EnvManager.UV,
    source="python_env.yaml",
    python="3.11",
    build_dependencies=("setuptools",),
    dependencies=("numpy==1.26.4", "-e ."),
)
DOCKER = EnvironmentSpec(
    manager=EnvManager.DOCKER,
    source="MLproject docker_env",
    image="localhost/team/train:1",
    volumes=("/data:/data:ro",),
    container_env={"GREETING": "hi"},
    copied_env=("AWS_PROFILE",),
    run_args=("--memory", "1g", "--init"),
)


def _submit(**fields: Any) -> JobSubmit:
    base = {"experiment_id": "0", "snapshot_id": "0" * 64, "project_uri": ".", "entry_point": "m"}
    return JobSubmit.model_validate({**base, "user": "u", **fields})


@pytest.mark.parametrize("value", [FULL, JobOptions(), UV, DOCKER, EnvironmentSpec()])
def test_a_value_reads_back_from_its_json_as_the_api_sends_it(
    value: JobOptions | EnvironmentSpec,
) -> None:
    field = "options" if isinstance(value, JobOptions) else "environment"
    sent = _submit(**{field: value}).model_dump(mode="json")[field]
    assert sent == value.to_json()
    assert type(value).from_json(sent) == value
    # What pydantic reads from that JSON is the same value, nested types and defaults included.
    assert getattr(_submit(**{field: sent}), field) == value


def test_the_json_is_plain() -> None:
    assert UV.to_json() == {
        "manager": "uv",
        "reason": None,
        "source": "python_env.yaml",
        "python": "3.11",
        "build_dependencies": ["setuptools"],
        "dependencies": ["numpy==1.26.4", "-e ."],
        "image": None,
        "volumes": [],
        "container_env": {},
        "copied_env": [],
        "run_args": [],
    }
    assert FULL.resources.asked() == {"num_cpus": 2.0, "memory": 1e9}
    assert FULL.to_json()["resources"] == {"num_cpus": 2.0, "num_gpus": None, "memory": 1e9}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"options": {"artifact_uri": "mlflow-artifacts:/x"}}, ("options", "artifact_uri")),
        ({"options": {"secret_env": {"KEY": "sealed"}}}, ("options", "secret_env")),
        ({"options": {"max_retries": 2}}, ("options", "max_retries")),
        ({"options": {"resources": {"num_cpu": 1}}}, ("options", "resources", "num_cpu")),
        (
            {"options": {"entry_point_spec": {"name": "m", "command": "c", "extra": 1}}},
            ("options", "entry_point_spec", "extra"),
        ),
        ({"environment": {"manager": "uv", "requirements": []}}, ("environment", "requirements")),
    ],
)
def test_a_submit_with_an_unknown_key_is_refused_naming_it(
    fields: dict[str, Any], where: tuple[str, ...]
) -> None:
    with pytest.raises(ValidationError) as refused:
        _submit(**fields)
    assert [e["loc"] for e in refused.value.errors()] == [where]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"options": {"timeout": "soon"}}, "valid number"),
        ({"options": {"timeout": 0}}, "TIMEOUT must be a number of seconds over 0"),
        ({"options": {"timeout": -5}}, "TIMEOUT must be a number of seconds over 0"),
        ({"options": {"env_vars": {"A": 1}}}, "valid string"),
        ({"options": {"env_vars": {"A=B": "1"}}}, "ENV_VARS names must be non-empty"),
        ({"options": {"resources": {"num_gpus": -1}}}, "NUM_GPUS must be a number of 0 or more"),
        ({"options": {"entry_point_spec": {"name": "m"}}}, "Field required"),
        ({"environment": {"manager": "conda"}}, "'local', 'uv' or 'docker'"),
        ({"environment": {"dependencies": "numpy"}}, "valid tuple"),
        ({"max_retries": -1}, "greater than or equal to 0"),
    ],
)
def test_a_submit_with_a_bad_value_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _submit(**fields)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"TIMEOUT": 0}, "backend_config TIMEOUT must be a number of seconds over 0, not 0.0."),
        ({"ENV_VARS": {"A=B": "1"}}, "backend_config ENV_VARS names must be non-empty"),
        ({"NUM_CPUS": -1}, "backend_config NUM_CPUS must be a number of 0 or more, not -1.0."),
        ({"MAX_RETRIES": -1}, "backend_config MAX_RETRIES must be 0 or more, not -1."),
    ],
)
def test_backend_config_refuses_what_a_job_cannot_run_with(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        BackendOptions.parse(config)
    assert refused.value.message.startswith(message)


def test_backend_config_makes_the_jobs_options() -> None:
    parsed = BackendOptions.parse(
        {"TIMEOUT": "60", "ENV_VARS": {"PLAIN": "yes"}, "NUM_CPUS": 2, "MEMORY": 1e9}
    )
    spec = FULL.entry_point_spec
    assert parsed.job_options(FULL.command, spec) == FULL


@pytest.mark.parametrize(
    ("stored", "read"),
    [
        # Before commands were built at submit, and before entry points were stored.
        ({"timeout": None, "env_vars": {}}, JobOptions()),
        (
            {"timeout": 5, "env_vars": {"A": "1"}, "resources": {"num_cpus": 2}, "command": "x"},
            JobOptions(
                timeout=5.0, env_vars={"A": "1"}, resources=Resources(num_cpus=2.0), command="x"
            ),
        ),
        # An entry point's parameter stored without a default.
        (
            {
                "entry_point_spec": {
                    "name": "m",
                    "parameters": {"d": {"type": "uri"}},
                    "command": "c",
                }
            },
            JobOptions(entry_point_spec=EntryPointSpec("m", "c", {"d": ParameterSpec(type="uri")})),
        ),
        # A key from a newer workspace: a runner older than its workspace reads what it knows.
        ({"command": "x", "priority_class": "low"}, JobOptions(command="x")),
    ],
)
def test_options_stored_by_older_versions_still_read(
    stored: dict[str, Any], read: JobOptions
) -> None:
    assert JobOptions.from_json(stored) == read


def test_environments_stored_by_older_versions_still_read() -> None:
    assert EnvironmentSpec.from_json({"manager": "local"}) == EnvironmentSpec()
    local = EnvironmentSpec.from_json({"manager": "local", "reason": "no file"})
    assert not local.builds and local.reason == "no file"
    built = EnvironmentSpec.from_json(
        {"manager": "uv", "source": "conda.yaml", "python": None, "dependencies": ["six"]}
    )
    assert built.builds and built.dependencies == ("six",) and built.build_dependencies == ()


def test_the_runner_reads_them_without_pydantic() -> None:
    # Every job's runner imports these before its code starts; pydantic would add ~0.1 s.
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, flowyard.runner.runner; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('pydantic', 'pydantic_core')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert found.stdout.strip() == "[]"
