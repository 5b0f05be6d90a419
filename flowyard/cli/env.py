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
@click.option(
    "--max-mb",
    type=click.FloatRange(min=0),
    default=None,
    help="Also remove the least recently used until the environments take at most this many MB.",
)
@click.option("--all", "remove_all", is_flag=True, help="Remove every environment not in use.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def prune(unused_days: float, max_mb: float | None, remove_all: bool, dry_run: bool) -> None:
    """Remove unfinished builds, and environments unused for a while or past a size; never
    one a job is running in. Job images of docker_env projects too (by age only)."""
    from rich.filesize import decimal

    from flowyard.env import builder, containers

    removed = builder.prune(
        None if remove_all else unused_days,
        None if max_mb is None else int(max_mb * 1e6),
        dry_run=dry_run,
    )
    images = containers.prune_here(None if remove_all else unused_days, dry_run=dry_run)
    if images:
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} {len(images)} job image(s): {', '.join(images)}")
    if not removed:
        if not images:
            click.echo("nothing to remove")
        return
    verb = "would remove" if dry_run else "removed"
    freed = decimal(sum(size for _, size in removed))
    click.echo(f"{verb} {len(removed)} ({freed}): {', '.join(name for name, _ in removed)}")
