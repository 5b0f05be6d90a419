"""Flowyard: run and track MLflow Projects on your own machines and Ray clusters."""

from flowyard.errors import FlowyardError
from flowyard.workspace import Workspace

__version__ = "0.1.0"

__all__ = ["FlowyardError", "Workspace", "__version__"]
