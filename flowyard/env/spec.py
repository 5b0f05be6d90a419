"""Which environment a project asks for, with MLflow's rules, normalised for the uv builder."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from flowyard.errors import InvalidRequestError
from flowyard.jobspec import EnvironmentSpec, EnvManager

# Conda packages that exist on PyPI, under the same name or another. A package not listed here is
# taken as conda-only (a compiler, a system library, CUDA) and refused with its name, since uv
# cannot install it. Add a row when a package is published on PyPI under a known name.
_SAME_NAME = (
    "numpy",
    "scipy",
    "pandas",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "statsmodels",
    "requests",
    "pyyaml",
    "cloudpickle",
    "joblib",
    "xgboost",
    "lightgbm",
    "catboost",
    "tensorflow",
    "keras",
    "pillow",
    "h5py",
    "tqdm",
    "click",
    "mlflow",
    "mlflow-skinny",
    "pyarrow",
    "numba",
    "sympy",
    "networkx",
    "plotly",
    "nltk",
    "setuptools",
    "wheel",
    "scikit-image",
    "sqlalchemy",
    "psutil",
    "protobuf",
    "transformers",
    "datasets",
    "python-dateutil",
)
CONDA_TO_PYPI = {name: name for name in _SAME_NAME} | {
    "pytorch": "torch",
    "py-xgboost": "xgboost",
    "opencv": "opencv-python",
}
# Conda's own tooling: part of every conda env, meaningless to uv.
CONDA_SKIP = {"pip"}
# Azure ML's own packages, which Azure's samples list beside mlflow: they talk to Azure, which a
# Flowyard job neither needs nor reaches, and azureml-mlflow alone brings ~80 packages.
_AZURE_TRACKING = "azureml-mlflow"
_AZURE_PREFIX = "azureml-"
_CONDA_SPEC = re.compile(
    r"^(?:[\w.-]+::)?(?P<name>[A-Za-z0-9_.-]+)\s*(?P<op>[=<>!~]*)\s*(?P<ver>.*)$"
)


def left_out_reason(name: str) -> str | None:
    """Why the builder leaves the requirement named ``name`` (canonical) out, or None."""
    if name == _AZURE_TRACKING:
        return "Azure's tracking plugin, not needed on Flowyard"
    if name.startswith(_AZURE_PREFIX) or name == "azureml":
        return "Azure ML's SDK, not needed on Flowyard (drop `import azureml` from the code)"
    return None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InvalidRequestError(f"The environment file {path.name} cannot be read ({e}).") from e
    if not isinstance(data, dict):
        raise InvalidRequestError(f"The environment file {path.name} must be a YAML mapping.")
    return data


def _python_request(version: str, source: str) -> str:
    if not re.fullmatch(r"\d+(\.\d+){0,2}", version):
        raise InvalidRequestError(
            f"{source} asks for Python {version!r}; write a version like 3.11 or 3.11.7."
        )
    return version


def from_python_env(path: Path) -> EnvironmentSpec:
    data = _load_yaml(path)
    python = str(data.get("python", "")).strip()
    deps = data.get("dependencies") or []
    build = data.get("build_dependencies") or []
    if not isinstance(deps, list) or not isinstance(build, list):
        raise InvalidRequestError(f"{path.name}: dependencies must be lists of requirements.")
    return EnvironmentSpec(
        manager=EnvManager.UV,
        source=path.name,
        python=_python_request(python, path.name) if python else None,
        build_dependencies=tuple(_expand([str(d) for d in build], path.parent)),
        dependencies=tuple(_expand([str(d) for d in deps], path.parent)),
    )


_INCLUDE = re.compile(r"^(?:-r|--requirement)[\s=]+(?P<file>\S+)$")


def _expand(lines: list[str], base: Path, depth: int = 0) -> list[str]:
    """Requirement lines with `-r file` replaced by that file's lines (as MLflow's own
    python_env.yaml files write them), so the environment's cache key covers what they say."""
    found: list[str] = []
    for raw in lines:
        line = raw.split(" #", 1)[0].strip()
        match = _INCLUDE.match(line)
        if not match:
            if line and not line.startswith("#"):
                found.append(line)
            continue
        included = (base / match["file"]).resolve()
        if depth > 5 or not included.is_file():
            raise InvalidRequestError(
                f"The requirements file {match['file']} named in the environment does not exist "
                f"in the project ({included}); add it or remove the line."
            )
        found.extend(_expand(included.read_text().splitlines(), included.parent, depth + 1))
    return found


def _conda_to_pip(spec: str, source: str) -> tuple[str | None, str | None]:
    """(python version, pip requirement) for one conda dependency string."""
    match = _CONDA_SPEC.match(spec.strip())
    if not match:
        raise InvalidRequestError(f"{source}: cannot read the conda dependency {spec!r}.")
    name, op, version = match["name"].lower(), match["op"], match["ver"].strip()
    # conda's build string (`numpy=1.26=py311h...`) says nothing uv can use.
    version = version.split("=")[0].strip() if op == "=" else version
    if name == "python":
        return (_python_request(version.rstrip(".*"), source) if version else None), None
    if name in CONDA_SKIP:
        return None, None
    if name not in CONDA_TO_PYPI:
        raise InvalidRequestError(
            f"{source} asks for the conda package {name!r}, which has no PyPI counterpart "
            "Flowyard knows; move it to the pip: list under its PyPI name, or remove it."
        )
    pypi = CONDA_TO_PYPI[name]
    if not version:
        return None, pypi
    # conda's `=1.2` means any 1.2.x; `==1.2` and the comparison operators mean what pip's do.
    pip_op = "==" if op in ("=", "==") else op
    if op == "=" and not version.endswith("*"):
        version += ".*" if version.count(".") < 2 else ""
    return None, f"{pypi}{pip_op}{version}"


def from_conda_yaml(path: Path) -> EnvironmentSpec:
    """A conda.yaml translated for uv: its Python, its `pip:` list and the conda packages that
    exist on PyPI (see CONDA_TO_PYPI)."""
    data = _load_yaml(path)
    python: str | None = None
    deps: list[str] = []
    for item in data.get("dependencies") or []:
        if isinstance(item, dict):
            deps.extend(str(d) for d in item.get("pip") or [])
            continue
        version, requirement = _conda_to_pip(str(item), path.name)
        python = version or python
        if requirement:
            deps.append(requirement)
    return EnvironmentSpec(
        manager=EnvManager.UV, source=path.name, python=python, dependencies=tuple(deps)
    )


def from_docker_env(docker_env: Mapping[str, Any], source: str) -> EnvironmentSpec:
    """MLproject's ``docker_env`` (``image``, ``volumes``, ``environment``) as MLflow reads it:
    each ``environment`` entry is a ``[NAME, VALUE]`` to set, or a ``NAME`` to copy from the
    submitting machine's environment."""
    image = docker_env.get("image")
    if not isinstance(image, str) or not image.strip():
        raise InvalidRequestError(
            f"{source}'s docker_env has no image; name one, e.g. `docker_env: {{image: "
            "python:3.11-slim}`."
        )
    volumes = docker_env.get("volumes") or []
    if not isinstance(volumes, list) or not all(isinstance(v, str) and ":" in v for v in volumes):
        raise InvalidRequestError(
            f'{source}\'s docker_env volumes must be a list of "HOST:CONTAINER" strings, not '
            f"{volumes!r}."
        )
    values: dict[str, str] = {}
    copied: list[str] = []
    for entry in docker_env.get("environment") or []:
        if isinstance(entry, list) and len(entry) == 2:
            values[str(entry[0])] = str(entry[1])
        elif isinstance(entry, str):
            copied.append(entry)
        else:
            raise InvalidRequestError(
                f"{source}'s docker_env environment entry {entry!r} must be [NAME, VALUE] or a "
                "NAME to copy from the submitting machine."
            )
    return EnvironmentSpec(
        manager=EnvManager.DOCKER,
        source=f"{source} docker_env",
        image=image.strip(),
        volumes=tuple(volumes),
        container_env=values,
        copied_env=tuple(copied),
    )


def resolve(project: Any, work_dir: Path, *, build: bool) -> EnvironmentSpec:
    """The environment a job of ``project`` gets.

    Args:
        project: MLflow's loaded project (its ``env_type`` and ``env_config_path`` follow MLflow's
            rules: MLproject's python_env/conda_env, else python_env.yaml, else conda.yaml).
        build: USE_CONDA / ENV_MANAGER asked for the project's environment.
    """
    if project.docker_env:
        # As in MLflow, docker_env wins over every other environment, USE_CONDA or not.
        return from_docker_env(project.docker_env, "MLproject")
    if not build:
        return EnvironmentSpec(reason="USE_CONDA is false: the compute's own Python")
    path = getattr(project, "env_config_path", None)
    if not path:
        return EnvironmentSpec(reason="the project has no environment file")
    path = Path(work_dir, path) if not Path(path).is_absolute() else Path(path)
    if project.env_type == "python_env":
        return from_python_env(path)
    return from_conda_yaml(path)
