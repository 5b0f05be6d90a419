"""`flowyard server`: serve a workspace."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import click

from flowyard import defaults
from flowyard.cli.workspace import _require_server_extra
from flowyard.errors import ConfigError, ConfigNotFoundError
from flowyard.paths import config_dir
from flowyard.workspace import WorkspaceConfig, find_config


@click.command()
@click.option(
    "--workspace",
    "workspace_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="A workspace folder (default: the one in .flowyard/config.json).",
)
@click.option("--db-url", help="A SQLAlchemy database URL, instead of a workspace folder.")
@click.option("--artifacts", help="Artifact store (folder or URI); required with --db-url.")
@click.option(
    "--name",
    default=defaults.DEFAULT_WORKSPACE_NAME,
    show_default=True,
    help="Workspace name, recorded the first time a --db-url database is served.",
)
@click.option(
    "--host", default=None, help=f"Address to listen on [default: {defaults.DEFAULT_HOST}]"
)
@click.option("--port", type=int, default=None, help=f"[default: {defaults.DEFAULT_PORT}]")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--advertise-url",
    envvar="FLOWYARD_ADVERTISE_URL",
    default="",
    help="The URL runners reach the workspace by (a load balancer's in front of replicas); "
    "default: this server's own. Every replica is also a runner's fallback.",
)
@click.option(
    "--replica-url",
    envvar="FLOWYARD_REPLICA_URL",
    default="",
    help="The URL runners on other hosts reach this replica by, should the advertised one "
    "fail; default: this server's own (with the host's name when listening on 0.0.0.0 or ::).",
)
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--no-auth",
    "auth",
    flag_value=False,
    default=True,
    help="Serve without tokens; refused on an address other than loopback unless --insecure.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow --no-auth on a non-loopback address (a proxy in front must authenticate).",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0.1),
    default=defaults.MAX_BODY_MB,
    show_default=True,
    help="Largest request body (JSON and MLflow's tracking API) in MB; bigger ones get 413.",
)
@click.option(
    "--max-blob-mb",
    type=click.FloatRange(min=0.1),
    default=defaults.SNAPSHOT_BLOB_MAX_MB,
    show_default=True,
    help="Largest snapshot file upload in MB.",
)
@click.option(
    "--max-log-append-kib",
    type=click.IntRange(min=defaults.MIN_LOG_APPEND_KIB),
    default=defaults.MAX_LOG_APPEND_KIB,
    show_default=True,
    help="Largest piece of a job's log sent in one request, in KiB.",
)
@click.option(
    "--max-log-mb",
    type=click.FloatRange(min=0.1),
    default=defaults.MAX_LOG_MB,
    show_default=True,
    help="A job's log is cut at this size in MB, the cut marked in the log.",
)
@click.option(
    "--blob-cache-mb",
    type=click.FloatRange(min=0),
    default=defaults.BLOB_CACHE_MB,
    show_default=True,
    envvar="FLOWYARD_BLOB_CACHE_MB",
    help="This host's blob cache (its process runners') is pruned back to this size in MB; "
    "its runners read the same variable.",
)
@click.option(
    "--env-cache-mb",
    type=click.FloatRange(min=0),
    default=defaults.ENV_CACHE_MB,
    show_default=True,
    envvar="FLOWYARD_ENV_CACHE_MB",
    help="This host's job environments (its process runners') are pruned back to this size in "
    "MB, least recently used first, never one in use; its runners read the same variable.",
)
@click.option(
    "--disk-warn-percent",
    type=click.FloatRange(min=1, max=100),
    default=defaults.DISK_WARN_PERCENT,
    show_default=True,
    help="Health warns when the database's or the artifact store's disk is fuller than this.",
)
def server(
    workspace_dir: Path | None,
    db_url: str | None,
    artifacts: str | None,
    name: str,
    host: str | None,
    port: int | None,
    workers: int,
    advertise_url: str,
    replica_url: str,
    log_level: str,
    auth: bool,
    insecure: bool,
    max_body_mb: float,
    max_blob_mb: float,
    max_log_append_kib: int,
    max_log_mb: float,
    blob_cache_mb: float,
    env_cache_mb: float,
    disk_warn_percent: float,
) -> None:
    """Serve a workspace: MLflow's tracking API, artifacts and UI, and Flowyard's API."""
    _require_server_extra()
    from flowyard.server.serve import serve
    from flowyard.server.settings import ServerSettings
    from flowyard.server.workspace_folder import WorkspaceFolder

    config_url: str | None = None
    # A folder workspace keeps its key beside its database; a --db-url one in this user's config.
    key_file = config_dir() / "secret.key"
    if db_url:
        if workspace_dir:
            raise ConfigError("Pass either --workspace or --db-url, not both.")
        if not artifacts:
            raise ConfigError(
                "--db-url needs --artifacts too, a folder or URI where artifacts are stored."
            )
        artifacts_destination = artifacts
    else:
        if workspace_dir is None:
            try:
                config = WorkspaceConfig.load(find_config())
            except ConfigNotFoundError as e:
                raise ConfigNotFoundError(
                    f"{e.message.rstrip('.')}, or pass --workspace DIR or --db-url URL."
                ) from e
            if not config.workspace_dir:
                raise ConfigError(
                    "The project's .flowyard/config.json names no workspace folder; pass "
                    "--workspace DIR or --db-url URL."
                )
            workspace_dir, config_url = Path(config.workspace_dir), config.url
        folder = WorkspaceFolder.load(workspace_dir)
        db_url, name = folder.db_url, folder.name
        artifacts_destination = str(folder.artifacts)
        key_file = folder.path / "secret.key"
    parts = urlsplit(config_url or "")
    settings = ServerSettings(
        workspace_name=name,
        db_url=db_url,
        artifacts_destination=artifacts_destination,
        host=host or defaults.DEFAULT_HOST,
        port=port or parts.port or defaults.DEFAULT_PORT,
        workers=workers,
        advertised_url=_http_url("--advertise-url", advertise_url),
        replica_url=_http_url("--replica-url", replica_url),
        auth=auth,
        insecure=insecure,
        secret_key_file=str(key_file),
        max_body_mb=max_body_mb,
        max_blob_mb=max_blob_mb,
        max_log_append_kib=max_log_append_kib,
        max_log_mb=max_log_mb,
        blob_cache_mb=blob_cache_mb,
        env_cache_mb=env_cache_mb,
        disk_warn_percent=disk_warn_percent,
        **ServerSettings.tunables(os.environ),
    )
    serve(settings, log_level=log_level)


def _http_url(option: str, url: str) -> str:
    """``url`` if it is empty or an http(s) URL with a host, else a ConfigError."""
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise ConfigError(
            f"{option} {url!r} is not a URL runners can reach; give one such as "
            "http://flowyard.example.com:5000."
        )
    return url.rstrip("/")
