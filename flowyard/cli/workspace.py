"""`flowyard workspace ...`: create a workspace and point a project at it."""

from __future__ import annotations

import os
from importlib.util import find_spec
from pathlib import Path

import click

from flowyard import defaults
from flowyard.errors import ConfigError
from flowyard.names import check_portable_name
from flowyard.workspace import ENV_URL, Workspace, WorkspaceConfig, find_config


@click.group()
def workspace() -> None:
    """Create workspaces and connect projects to them."""


@workspace.command("init")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--name", default=defaults.DEFAULT_WORKSPACE_NAME, show_default=True)
@click.option(
    "--url",
    default=f"http://{defaults.DEFAULT_HOST}:{defaults.DEFAULT_PORT}",
    show_default=True,
    help="Where the workspace's server will be reached.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing .flowyard/config.json here.")
def init(directory: Path | None, name: str, url: str, force: bool) -> None:
    """Create a workspace folder (database and artifacts) at DIRECTORY and write
    .flowyard/config.json in the current folder.

    DIRECTORY defaults to ~/.flowyard/workspaces/NAME.
    """
    check_portable_name(name, "workspace")
    config_path = Path.cwd() / defaults.CONFIG_DIR / defaults.CONFIG_FILE
    if config_path.exists() and not force:
        raise ConfigError(
            f"{config_path} already exists; pass --force to point this project at a new workspace."
        )
    _require_server_extra()
    from flowyard.server.db.engine import prepare_database
    from flowyard.server.services.bootstrap import bootstrap_owner
    from flowyard.server.workspace_folder import WorkspaceFolder

    folder = WorkspaceFolder.create(directory or defaults.WORKSPACES_HOME / name, name)
    prepare_database(folder.db_url, name)
    saved = bootstrap_owner(folder.db_url, url)
    WorkspaceConfig(name=name, url=url, workspace_dir=str(folder.path)).write(config_path)
    click.echo(f"Created workspace {name!r} in {folder.path}")
    click.echo(f"Wrote {config_path}")
    if saved:
        click.echo(
            f"Created an owner token (user 'owner') and saved it in {saved} for {url}; "
            "`flowyard token create` makes tokens for others"
        )
    click.echo("Start it with: flowyard server")


@workspace.command("show")
def show() -> None:
    """Connect to the workspace of this project and print what it is."""
    ws = Workspace.from_config()
    source = os.environ.get(ENV_URL) and ENV_URL
    click.echo(f"workspace: {ws.name}\nurl:       {ws.get_mlflow_tracking_uri()}")
    click.echo(f"from:      {source or find_config()}")


def _require_server_extra() -> None:
    # find_spec, not import: importing MLflow's server takes seconds.
    missing = [m for m in ("fastapi", "flask", "alembic", "uvicorn") if not find_spec(m)]
    if missing:
        raise ConfigError(
            f"The workspace server's parts are not installed ({', '.join(missing)}); install "
            "them with pip install 'flowyard[server]'."
        )
