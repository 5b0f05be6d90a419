"""`flowyard.projects.run`: MLflow's `mlflow.projects.run`, plus the `use_conda` argument the
Azure ML samples pass, so their code runs by changing only its import."""

from __future__ import annotations

import json
import os
from typing import Any

import mlflow.projects


def run(
    uri: str,
    entry_point: str = "main",
    version: str | None = None,
    parameters: dict[str, Any] | None = None,
    docker_args: dict[str, Any] | None = None,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    backend: str = "flowyard",
    backend_config: dict[str, Any] | str | os.PathLike[str] | None = None,
    storage_dir: str | None = None,
    synchronous: bool = True,
    run_id: str | None = None,
    run_name: str | None = None,
    env_manager: str | None = None,
    build_image: bool = False,
    docker_auth: dict[str, Any] | None = None,
    use_conda: bool | None = None,
) -> Any:
    """Run an MLflow project, by default on Flowyard.

    ``use_conda`` (as in MLflow 1.x and the Azure ML samples) becomes ``USE_CONDA`` in
    ``backend_config`` for the ``flowyard`` backend; for other backends it picks MLflow's
    ``env_manager`` (``conda`` or ``local``).
    """
    if use_conda is not None:
        if backend == "flowyard":
            config: dict[str, Any]
            if backend_config is None:
                config = {}
            elif isinstance(backend_config, dict):
                config = dict(backend_config)
            else:
                with open(backend_config) as f:
                    config = json.load(f)
            config.setdefault("USE_CONDA", use_conda)
            backend_config = config
        elif env_manager is None:
            env_manager = "conda" if use_conda else "local"
    return mlflow.projects.run(
        uri,
        entry_point=entry_point,
        version=version,
        parameters=parameters,
        docker_args=docker_args,
        experiment_name=experiment_name,
        experiment_id=experiment_id,
        backend=backend,
        backend_config=backend_config,
        storage_dir=storage_dir,
        synchronous=synchronous,
        run_id=run_id,
        run_name=run_name,
        env_manager=env_manager,
        build_image=build_image,
        docker_auth=docker_auth,
    )
