"""What the command groups share: the project's workspace client, and tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from flowyard.client import Client
from flowyard.workspace import Workspace

if TYPE_CHECKING:
    from flowyard.schemas import DeletedOut


def workspace_client() -> Client:
    """A client for the workspace of the project in the current folder."""
    return Client(Workspace.from_config().url)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on a terminal; piped, one tab-separated line per row for `cut`, `awk` and scripts."""
    if not sys.stdout.isatty():
        for row in (header, *rows):
            click.echo("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(*header)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


def confirm(question: str, yes: bool) -> None:
    """Ask before something that cannot be undone (``--yes`` does not ask); any answer but yes
    stops the command."""
    if not yes:
        click.confirm(question, abort=True)


def print_deleted(done: DeletedOut) -> None:
    """One line on what a deletion freed, and one on the jobs it left."""
    from rich.filesize import decimal

    click.echo(
        f"deleted {len(done.job_ids)} job(s), {done.runs} run(s): "
        f"{done.artifact_files} artifact file(s), {decimal(done.artifact_bytes)}; "
        f"log {decimal(done.log_bytes)}"
    )
    if done.left_active:
        click.echo(
            f"left {len(done.left_active)} job(s) that have not ended "
            f"({', '.join(done.left_active[:5])}{' …' if len(done.left_active) > 5 else ''}); "
            "cancel them first"
        )
