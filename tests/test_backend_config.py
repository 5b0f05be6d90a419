"""backend_config as Flowyard reads it (``BackendOptions.parse``): a pure rule, tested alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowyard.backend_config import KNOWN_KEYS, BackendOptions
from flowyard.errors import InvalidRequestError


def test_defaults_are_azures() -> None:
    options = BackendOptions.parse(None)
    assert options == BackendOptions.parse({})
    assert options.compute == "local" and not options.use_conda and options.stream_output
    assert options.timeout is None and options.max_retries is None and not options.resources
    assert not options.builds_environment


def test_every_key_is_read() -> None:
    options = BackendOptions.parse(
        {
            "COMPUTE": "cpu-cluster",
            "USE_CONDA": "true",
            "STREAM_OUTPUT": "no",
            "TIMEOUT": "90.5",
            "ENV_VARS": '{"A": 1, "B": {"value": "s3cret", "secret": true}}',
            "TAGS": {"team": "ml"},
            "PRIORITY": 3,
            "MAX_RETRIES": "2",
            "NUM_CPUS": 2,
            "NUM_GPUS": 0,
            "MEMORY": "1e9",
            "SNAPSHOT_MAX_MB": 10,
            "SNAPSHOT_MAX_FILES": 50,
        }
    )
    assert options.compute == "cpu-cluster"
    assert options.use_conda and options.builds_environment and not options.stream_output
    assert options.timeout == 90.5 and options.priority == 3 and options.max_retries == 2
    assert options.env_vars == {"A": "1"} and options.secret_env == {"B": "s3cret"}
    assert options.tags == {"team": "ml"}
    assert options.resources == {"num_cpus": 2.0, "num_gpus": 0.0, "memory": 1e9}
    assert (options.snapshot_max_mb, options.snapshot_max_files) == (10, 50)
    assert "s3cret" not in repr(options)


def test_mlflows_own_keys_are_accepted_and_env_manager_wins_over_use_conda() -> None:
    options = BackendOptions.parse(
        {"ENV_MANAGER": "local", "USE_CONDA": True, "SYNCHRONOUS": True, "STORAGE_DIR": None}
    )
    assert not options.builds_environment
    assert BackendOptions.parse({"ENV_MANAGER": "uv"}).builds_environment


def test_a_json_file(tmp_path: Path) -> None:
    path = tmp_path / "backend.json"
    path.write_text(json.dumps({"COMPUTE": "gpu", "TIMEOUT": 5}))
    assert BackendOptions.parse(path).compute == "gpu"
    assert BackendOptions.parse(str(path)).timeout == 5


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"COMPUTER": "x"},
            r"Unknown backend_config key\(s\) COMPUTER; the known keys are: COMPUTE",
        ),
        ({"COMPUTE": 3}, "COMPUTE must be a name, not 3"),
        ({"ENV_MANAGER": "pip"}, "ENV_MANAGER 'pip' is not one of conda, local, uv, virtualenv"),
        ({"USE_CONDA": "maybe"}, "USE_CONDA must be true or false, not 'maybe'"),
        ({"TIMEOUT": "soon"}, "TIMEOUT must be a number, not 'soon'"),
        ({"TIMEOUT": float("nan")}, "TIMEOUT must be a number"),
        ({"TIMEOUT": "inf"}, "TIMEOUT must be a number"),
        ({"PRIORITY": 1.5}, "PRIORITY must be a number, not 1.5"),
        ({"MAX_RETRIES": None, "PRIORITY": None}, "PRIORITY must be a number, not None"),
        ({"TAGS": "[1]"}, "TAGS must be an object of names to values"),
        ({"ENV_VARS": {"T": {"value": "x", "hidden": True}}}, r"ENV_VARS T must be a value or"),
        ({"ENV_VARS": {"T": {"secret": True}}}, r"ENV_VARS T must be a value or"),
        ({"ENV_VARS": {"T": {"value": "x", "secret": "perhaps"}}}, "ENV_VARS T secret must be"),
    ],
)
def test_bad_values_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        BackendOptions.parse(config)


def test_unknown_key_lists_every_known_one() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        BackendOptions.parse({"NUM_CPU": 1})
    assert all(key in str(caught.value) for key in KNOWN_KEYS)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]"])
def test_a_bad_file_says_what_to_pass(tmp_path: Path, content: str) -> None:
    path = tmp_path / "backend.json"
    path.write_text(content)
    with pytest.raises(InvalidRequestError, match=f"The backend_config file {path}"):
        BackendOptions.parse(path)
    with pytest.raises(InvalidRequestError, match="cannot be read as JSON"):
        BackendOptions.parse(tmp_path / "missing.json")
