"""Compute targets: where runners run.

``local``, which every workspace has, is the machine that submits the job, which starts the runner
itself; the workspace's dispatcher starts the others' runners: ``process`` runs them as
subprocesses of the workspace host, ``ray`` submits them as Ray jobs to an existing Ray cluster.
Each is a :class:`~flowyard.compute.base.ComputeTarget`; :mod:`flowyard.compute.launcher` starts
the runner process.
"""

from __future__ import annotations

from typing import Any

from flowyard.compute.base import ComputeTarget, ContainerPolicy
from flowyard.errors import InvalidRequestError
from flowyard.schemas import REGISTERED_TYPES, ComputeType


def target_for(
    kind: str, name: str, address: str | None, settings: dict[str, Any]
) -> ComputeTarget:
    """The target object for a registered compute."""
    if kind == ComputeType.PROCESS:
        from flowyard.compute.process import ProcessTarget

        return ProcessTarget(
            name,
            settings.get("isolation", "sandbox"),
            ContainerPolicy.from_settings(settings),
            settings.get("isolation_image"),
        )
    if kind == ComputeType.RAY:
        from flowyard.compute.ray import RayTarget

        if not address:
            raise InvalidRequestError(f"The ray compute {name!r} has no --address.")
        return RayTarget(name, address, settings, ContainerPolicy.from_settings(settings))
    raise InvalidRequestError(
        f"Unknown compute type {kind!r}; use one of {', '.join(REGISTERED_TYPES)}."
    )
