"""Defaults, each with the reason it has its value."""

from pathlib import Path

# Flowyard's own API lives under one prefix beside MLflow's `/api/2.0/mlflow/...`, so the two never
# collide and a proxy can route both with one rule.
API_PREFIX = "/api/flowyard/v1"

# Where user code finds its workspace, as Azure ML kept `.azureml/config.json`.
CONFIG_DIR = ".flowyard"
CONFIG_FILE = "config.json"

# Inside a workspace folder: the file that marks it, the SQLite database and the artifact root.
WORKSPACE_FILE = "workspace.json"
SQLITE_FILE = "flowyard.db"
ARTIFACTS_DIR = "artifacts"

DEFAULT_WORKSPACE_NAME = "default"
# A user-level home for workspaces keeps databases out of project folders, whose code gets snapshot.
WORKSPACES_HOME = Path.home() / ".flowyard" / "workspaces"

# 127.0.0.1 and not 0.0.0.0: a workspace is private until someone chooses to expose it.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000

# The info call that recognises a workspace must fail fast when nothing answers.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
