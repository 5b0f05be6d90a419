"""`Workspace`: how user code finds its workspace, as `azureml.core.Workspace` did."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowyard import defaults
from flowyard.client import Client
from flowyard.errors import ConfigError, ConfigNotFoundError

if TYPE_CHECKING:
    from flowyard.job import Job

ENV_CONFIG = "FLOWYARD_CONFIG"
ENV_URL = "FLOWYARD_WORKSPACE_URL"


@dataclass(frozen=True)
class WorkspaceConfig:
    """The contents of ``.flowyard/config.json``."""

    name: str
    url: str
    workspace_dir: str | None = None

    @classmethod
    def load(cls, path: Path) -> WorkspaceConfig:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(
                f"The workspace config {path} cannot be read ({e}); rewrite it with "
                "`flowyard workspace init` or `Workspace.get(url).write_config()`."
            ) from e
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            raise ConfigError(
                f'The workspace config {path} has no "url"; rewrite it with '
                "`flowyard workspace init` or `Workspace.get(url).write_config()`."
            )
        workspace_dir = data.get("workspace_dir")
        return cls(
            name=str(data.get("workspace_name", defaults.DEFAULT_WORKSPACE_NAME)),
            url=data["url"],
            workspace_dir=str(workspace_dir) if workspace_dir else None,
        )

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"workspace_name": self.name, "url": self.url}
        if self.workspace_dir:
            data["workspace_dir"] = self.workspace_dir
        return data

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")


def find_config(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to use: ``path`` (a file, or a folder to start from), else
    ``$FLOWYARD_CONFIG``, else ``.flowyard/config.json`` in the current folder or a parent."""
    explicit = path if path is not None else os.environ.get(ENV_CONFIG)
    if explicit is not None:
        candidate = Path(explicit).expanduser()
        if candidate.is_file():
            return candidate
        if not candidate.is_dir():
            raise ConfigNotFoundError(
                f"The workspace config {candidate} does not exist; create one with "
                "`flowyard workspace init` in your project folder."
            )
        start = candidate
    else:
        start = Path.cwd()
    start = start.resolve()
    searched = [start, *start.parents]
    for folder in searched:
        candidate = folder / defaults.CONFIG_DIR / defaults.CONFIG_FILE
        if candidate.is_file():
            return candidate
    raise ConfigNotFoundError(
        f"No {defaults.CONFIG_DIR}/{defaults.CONFIG_FILE} found in {start} or any of its "
        f"{len(searched) - 1} parent folders; create one with `flowyard workspace init` in your "
        "project folder, or set FLOWYARD_WORKSPACE_URL."
    )


class Workspace:
    """A Flowyard workspace, known by its URL."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url.rstrip("/")

    def __repr__(self) -> str:
        return f"Workspace(name={self.name!r}, url={self.url!r})"

    @classmethod
    def get(cls, url: str) -> Workspace:
        """Connect to the workspace served at ``url``; raises if nothing there is a workspace."""
        with Client(url) as client:
            info = client.info()
        return cls(name=str(info["workspace"]), url=url)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Workspace:
        """Find ``.flowyard/config.json`` (see :func:`find_config`) and connect to its workspace.

        ``$FLOWYARD_WORKSPACE_URL``, when set, is used instead of any file.
        """
        env_url = os.environ.get(ENV_URL)
        if env_url:
            return cls.get(env_url)
        return cls.get(WorkspaceConfig.load(find_config(path)).url)

    def write_config(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write ``.flowyard/config.json`` under the folder ``path`` (default: the current one).

        A ``path`` ending in ``.json`` is taken as the file itself.
        """
        target = Path(path) if path is not None else Path.cwd()
        if target.suffix != ".json":
            target = target / defaults.CONFIG_DIR / defaults.CONFIG_FILE
        WorkspaceConfig(name=self.name, url=self.url).write(target)
        return target

    def get_job(self, run_id: str, *, stream_output: bool = True) -> Job:
        """A job of this workspace, by its id (its MLflow run id): to wait for, to cancel, or
        to show in a notebook as a run table."""
        from flowyard.job import Job

        client = Client(self.url)
        return Job(client, client.get_job(run_id), stream_output=stream_output)

    def get_mlflow_tracking_uri(self) -> str:
        """The plain ``http(s)://`` URL that the stock MLflow client tracks against."""
        return self.url
