"""Flowyard: run and track MLflow Projects on your own machines and Ray clusters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowyard.errors import FlowyardError

if TYPE_CHECKING:
    from flowyard.job import Job
    from flowyard.workspace import Workspace

__version__ = "0.1.0"

__all__ = ["FlowyardError", "Job", "Workspace", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `python -m flowyard.runner` and the server load this package too,
    # and need neither the SDK's HTTP client nor its models to start.
    if name == "Workspace":
        from flowyard.workspace import Workspace

        return Workspace
    if name == "Job":
        from flowyard.job import Job

        return Job
    raise AttributeError(f"module 'flowyard' has no attribute {name!r}")
