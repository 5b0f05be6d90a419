"""`flowyard retention ...`: how long ended jobs are kept."""

from __future__ import annotations

import click

from flowyard.cli.common import print_table, workspace_client
from flowyard.schemas import RetentionOut, RetentionPolicy


def _rule(policy: RetentionPolicy) -> tuple[str, str]:
    return (
        "-" if policy.keep_days is None else f"{policy.keep_days:g} days",
        "-" if policy.keep_last is None else str(policy.keep_last),
    )


def _show(out: RetentionOut) -> None:
    rows = [("workspace", *_rule(out.workspace))]
    rows += [(f"experiment {e}", *_rule(p)) for e, p in out.experiments.items()]
    print_table(("policy of", "keep ended within", "keep newest"), rows)


@click.group("retention")
def retention() -> None:
    """How long ended jobs are kept; `flowyard gc` (and the server, on its schedule) applies it.

    A job goes once no rule keeps it; runs tagged flowyard.keep=true and the source runs of
    registered model versions always stay.
    """


@retention.command("show")
def show() -> None:
    """The workspace's policy and each experiment's own."""
    _show(workspace_client().retention())


@retention.command("set")
@click.option(
    "--experiment-id", help="Set this experiment's own policy (default: the workspace's)."
)
@click.option(
    "--keep-days",
    type=click.FloatRange(min=0, min_open=True),
    help="Keep jobs that ended within DAYS.",
    metavar="DAYS",
)
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    help="Keep the newest N ended jobs of each experiment.",
    metavar="N",
)
def set_policy(experiment_id: str | None, keep_days: float | None, keep_last: int | None) -> None:
    """Set a policy (a rule not given keeps nothing; none given keeps every job)."""
    _show(
        workspace_client().set_retention(
            keep_days=keep_days, keep_last=keep_last, experiment_id=experiment_id
        )
    )


@retention.command("clear")
@click.argument("experiment_id")
def clear(experiment_id: str) -> None:
    """An experiment follows the workspace's policy again."""
    _show(workspace_client().clear_retention(experiment_id))
