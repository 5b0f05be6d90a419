"""What the command groups share: the project's workspace client, and tables."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from flowyard.client import Client
from flowyard.workspace import Workspace


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
