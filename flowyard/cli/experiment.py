"""`flowyard experiment ...`: what Flowyard adds to MLflow's experiments (deleting one for good)."""

from __future__ import annotations

import click

from flowyard.cli.common import confirm, print_deleted, workspace_client


@click.group("experiment")
def experiment() -> None:
    """Delete experiments with their jobs (MLflow's `mlflow experiments` does the rest)."""


@experiment.command("delete")
@click.argument("experiment_id")
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
def delete(experiment_id: str, yes: bool) -> None:
    """Delete an experiment for good: its jobs, every run in it, their artifacts and logs.

    Refused while a job of the experiment has not ended: cancel it first.
    """
    confirm(f"Delete experiment {experiment_id} for good, with every job and run in it?", yes)
    print_deleted(workspace_client().delete_experiment(experiment_id))
