"""The `flowyard` command."""

from __future__ import annotations

from typing import Any

import click

from flowyard import __version__
from flowyard.errors import FlowyardError


class _Group(click.Group):
    """Shows Flowyard's own errors as one line, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FlowyardError as e:
            raise click.ClickException(e.message) from e


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="flowyard")
def cli() -> None:
    """Run and track MLflow Projects in a self-hosted workspace."""


def _register() -> None:
    from flowyard.cli.access import login, logout, token, user, whoami
    from flowyard.cli.compute import compute
    from flowyard.cli.env import env
    from flowyard.cli.experiment import experiment
    from flowyard.cli.gc import gc
    from flowyard.cli.jobs import job, run
    from flowyard.cli.retention import retention
    from flowyard.cli.server import server
    from flowyard.cli.snapshot import snapshot
    from flowyard.cli.sweep import sweep
    from flowyard.cli.workspace import workspace

    cli.add_command(workspace)
    cli.add_command(server)
    cli.add_command(job)
    cli.add_command(experiment)
    cli.add_command(gc)
    cli.add_command(retention)
    cli.add_command(run)
    cli.add_command(env)
    cli.add_command(compute)
    cli.add_command(snapshot)
    cli.add_command(sweep)
    for command in (user, token, login, logout, whoami):
        cli.add_command(command)


_register()


def main() -> None:
    cli()
