"""`flowyard env ...`: the job environments cached on this machine."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.table import Table


@click.group("env")
def env() -> None:
    """List and prune the job environments cached on this machine."""


@env.command("list")
def list_envs() -> None:
    from flowyard.env import builder

    table = Table("key", "from", "python", "packages", "size", "last used")
    for e in builder.list_envs():
        table.add_row(
            e.key[:12],
            e.source,
            e.python,
            str(len(e.requirements)),
            f"{e.size_bytes / 1e6:.0f} MB",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(e.last_used)),
        )
    Console().print(table)


@env.command("prune")
@click.option(
    "--unused-days",
    type=float,
    default=30,
    show_default=True,
    help="Remove environments no job used for this long.",
)
@click.option("--all", "remove_all", is_flag=True, help="Remove every environment not in use.")
def prune(unused_days: float, remove_all: bool) -> None:
    """Remove unfinished builds, and environments unused for a while."""
    from flowyard.env import builder

    removed = builder.prune(None if remove_all else unused_days)
    click.echo(f"removed {len(removed)}: {', '.join(removed)}" if removed else "nothing to remove")
