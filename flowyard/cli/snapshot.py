"""`flowyard snapshot ...`: look at and fetch the code that jobs ran."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from flowyard.client import Client
from flowyard.snapshot import MB, materialize
from flowyard.workspace import Workspace


@click.group()
def snapshot() -> None:
    """Look at and fetch the code snapshots that jobs ran."""


def _client() -> Client:
    return Client(Workspace.from_config().url)


@snapshot.command("show")
@click.argument("snapshot_id")
def show(snapshot_id: str) -> None:
    """List the files of snapshot SNAPSHOT_ID."""
    with _client() as client:
        info = client.get_snapshot(snapshot_id)
    table = Table(
        title=f"snapshot {info.id}: {info.file_count:,} files, {info.total_bytes / MB:,.1f} MB",
        title_justify="left",
    )
    table.add_column("path", overflow="fold")
    table.add_column("bytes", justify="right")
    table.add_column("exec")
    table.add_column("sha256")
    for f in info.files:
        table.add_row(f.path, f"{f.size:,}", "x" if f.executable else "", f.digest[:12])
    Console().print(table)


@snapshot.command("download")
@click.argument("snapshot_id")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def download(snapshot_id: str, directory: Path) -> None:
    """Write the files of snapshot SNAPSHOT_ID into DIRECTORY."""
    with _client() as client:
        # Copies, not hard links into the blob cache: a user editing the files must not
        # change another download of the same snapshot.
        result = materialize(client, snapshot_id, directory)
    click.echo(
        f"Wrote {result.file_count:,} files ({result.total_bytes / MB:,.1f} MB) of snapshot "
        f"{result.id} to {directory}"
    )
