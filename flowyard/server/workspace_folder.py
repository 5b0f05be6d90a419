"""A workspace folder: the SQLite database and artifact root of a workspace on embedded defaults."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from flowyard import defaults
from flowyard.errors import ConfigError, WorkspaceExistsError
from flowyard.names import check_portable_name


@dataclass(frozen=True)
class WorkspaceFolder:
    """A folder holding ``workspace.json``, ``flowyard.db`` and ``artifacts/``."""

    path: Path
    name: str

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.path / defaults.SQLITE_FILE}"

    @property
    def artifacts(self) -> Path:
        return self.path / defaults.ARTIFACTS_DIR

    @classmethod
    def create(cls, path: Path, name: str) -> WorkspaceFolder:
        """Create the folder's files; refuses a folder that holds anything else."""
        check_portable_name(name, "workspace")
        path = path.expanduser().resolve()
        if (path / defaults.WORKSPACE_FILE).exists():
            raise WorkspaceExistsError(
                f"{path} already holds a workspace; serve it with "
                f"`flowyard server --workspace {path}` or choose another folder."
            )
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ConfigError(
                f"{path} exists and is not an empty folder; choose a new or empty folder for "
                "the workspace."
            )
        folder = cls(path=path, name=name)
        folder.artifacts.mkdir(parents=True, exist_ok=True)
        (path / defaults.WORKSPACE_FILE).write_text(json.dumps({"name": name}, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, path: Path) -> WorkspaceFolder:
        path = path.expanduser().resolve()
        marker = path / defaults.WORKSPACE_FILE
        try:
            data = json.loads(marker.read_text())
        except FileNotFoundError as e:
            raise ConfigError(
                f"{path} is not a workspace folder (no {defaults.WORKSPACE_FILE}); create one "
                f"with `flowyard workspace init {path}`."
            ) from e
        except ValueError as e:
            raise ConfigError(f"{marker} is not valid JSON ({e}); fix or recreate it.") from e
        return cls(
            path=path,
            name=check_portable_name(
                str(data.get("name", defaults.DEFAULT_WORKSPACE_NAME)), "workspace"
            ),
        )
