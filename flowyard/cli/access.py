"""`flowyard user|token|login|logout|whoami`: who may use a workspace, and this machine's token."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click

from flowyard import defaults
from flowyard.cli.common import print_table, workspace_client
from flowyard.client import Client
from flowyard.credentials import credentials_path, forget_token, save_token
from flowyard.errors import ConfigError
from flowyard.schemas import RoleName, TokenCreated
from flowyard.workspace import WorkspaceConfig, find_config

_DURATION = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_expiry(value: str) -> datetime:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO 8601 date or time (UTC if no zone)."""
    if m := _DURATION.match(value.strip()):
        return datetime.now(UTC) + timedelta(**{_UNITS[m[2]]: int(m[1])})
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"--expires {value!r} is neither a duration (30d, 12h, 90m, 2w) nor an ISO date "
            "(2027-01-31); give one of those."
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else ""


@click.group("user")
def user() -> None:
    """Create, list and delete the workspace's users (owners only)."""


@user.command("create")
@click.argument("name")
def create_user(name: str) -> None:
    created = workspace_client().create_user(name)
    click.echo(
        f"created user {created.name}; give them a token with "
        f"`flowyard token create --user {created.name} --role contributor`"
    )


@user.command("list")
def list_users() -> None:
    users = workspace_client().list_users()
    print_table(("user", "created"), [(u.name, _when(u.created_at)) for u in users])


@user.command("delete")
@click.argument("name")
def delete_user(name: str) -> None:
    """Delete NAME and revoke every token they hold (their jobs and runs stay)."""
    workspace_client().delete_user(name)
    click.echo(f"deleted user {name} and their tokens")


@click.group("token")
def token() -> None:
    """Create, list and revoke API tokens (owners only)."""


@token.command("create")
@click.option("--role", type=click.Choice([r.value for r in RoleName]), required=True)
@click.option("--user", "user_name", help="Whose token (default: yours).")
@click.option("--expires", help="A duration (30d, 12h, 90m, 2w) or an ISO date; default: never.")
@click.option("--description", default="", help="What the token is for.")
@click.option("--save", is_flag=True, help="Also use it from now on on this machine.")
@click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write it straight into this workspace folder's database, with no server or token: "
    "how whoever holds the folder gets back in after losing every owner token.",
)
def create_token(
    role: str,
    user_name: str | None,
    expires: str | None,
    description: str,
    save: bool,
    workspace_dir: Path | None,
) -> None:
    """Create a token and print it: it is shown this once, only its hash is kept."""
    expires_at = parse_expiry(expires) if expires else None
    if workspace_dir is not None:
        url, created = _create_offline(workspace_dir, role, user_name, expires_at, description)
    else:
        client = workspace_client()
        created = client.create_token(
            RoleName(role), user=user_name, expires_at=expires_at, description=description
        )
        url = client.url
    click.echo(created.token)
    note = f"token {created.id} for {created.user} ({created.role})"
    if created.expires_at:
        note += f", expires {_when(created.expires_at)} UTC"
    if save:
        note += f"; saved in {save_token(url, created.token)} for {url}"
    click.echo(note, err=True)


def _create_offline(
    folder: Path, role: str, user_name: str | None, expires_at: datetime | None, description: str
) -> tuple[str, TokenCreated]:
    from flowyard.cli.workspace import _require_server_extra

    _require_server_extra()
    from flowyard.server.auth.tokens import Role
    from flowyard.server.db.engine import prepare_database
    from flowyard.server.routers.auth import token_out
    from flowyard.server.services.bootstrap import create_token_in
    from flowyard.server.workspace_folder import WorkspaceFolder

    workspace = WorkspaceFolder.load(folder)
    db_url, _name = prepare_database(workspace.db_url, workspace.name)
    made = create_token_in(
        db_url,
        user_name or "owner",
        Role.parse(role),
        expires_at=expires_at,
        description=description or "created offline from the workspace folder",
    )
    assert made is not None
    row, token = made
    try:
        url = WorkspaceConfig.load(find_config()).url
    except ConfigError:
        url = f"http://{defaults.DEFAULT_HOST}:{defaults.DEFAULT_PORT}"
    return url, TokenCreated(**token_out(row).model_dump(), token=token)


@token.command("list")
@click.option("--user", "user_name", help="Only this user's tokens.")
def list_tokens(user_name: str | None) -> None:
    tokens = workspace_client().list_tokens(user_name)
    rows = [
        (
            t.id,
            t.user,
            t.role,
            "revoked" if t.revoked_at else "active",
            _when(t.expires_at),
            t.description,
        )
        for t in tokens
    ]
    print_table(("id", "user", "role", "state", "expires", "description"), rows)


@token.command("revoke")
@click.argument("token_id")
def revoke_token(token_id: str) -> None:
    revoked = workspace_client().revoke_token(token_id)
    click.echo(f"revoked token {revoked.id} of {revoked.user}")


def _url(url: str | None) -> str:
    return url or WorkspaceConfig.load(find_config()).url


@click.command()
@click.option("--url", help="The workspace's URL (default: the project's .flowyard/config.json).")
@click.option("--token", "value", help="The token (default: asked for, without echo).")
def login(url: str | None, value: str | None) -> None:
    """Check a token against the workspace and save it for this machine's user (mode 0600)."""
    url = _url(url)
    value = (value or click.prompt("Token", hide_input=True)).strip()
    with Client(url, token=value) as client:
        me = client.whoami()
    path = save_token(url, value)
    click.echo(f"signed in to {url} as {me.user} ({me.role}); token saved in {path}")


@click.command()
@click.option("--url", help="The workspace's URL (default: the project's .flowyard/config.json).")
def logout(url: str | None) -> None:
    """Forget this machine's saved token for the workspace."""
    url = _url(url)
    if forget_token(url):
        click.echo(f"forgot the token for {url} in {credentials_path()}")
    else:
        click.echo(f"no token was saved for {url}")


@click.command()
def whoami() -> None:
    """Who the workspace takes you for."""
    client = workspace_client()
    me = client.whoami()
    click.echo(f"{me.user} ({me.role}) at {client.url}" + ("" if me.auth else ", auth is off"))
