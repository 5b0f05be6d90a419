"""`flowyard sweep SPEC.yaml`: run a hyperparameter sweep; `flowyard sweep show ID`: its trials."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from flowyard.cli.common import print_table, workspace_client
from flowyard.errors import FlowyardError, InvalidRequestError

# The spec file's keys that say what to run; every other key is the sweep's own
# (flowyard.sweepspec) and goes to backend_config SWEEP.
RUN_KEYS = (
    "project",
    "entry_point",
    "parameters",
    "experiment",
    "run_name",
    "version",
    "compute",
    "backend_config",
)


class _SweepGroup(click.Group):
    """`flowyard sweep SPEC.yaml` is `flowyard sweep run SPEC.yaml`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_SweepGroup)
def sweep() -> None:
    """Hyperparameter sweeps: `flowyard sweep SPEC.yaml` runs one (docs/sweeps.md)."""


def read_spec(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The spec file's run keys and its sweep keys."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise InvalidRequestError(f"The sweep spec {path} cannot be read ({e}).") from e
    if not isinstance(data, dict):
        raise InvalidRequestError(
            f"The sweep spec {path} must be a YAML mapping of project, compute, search_space, "
            "objective and limits (docs/sweeps.md)."
        )
    run = {k: data[k] for k in RUN_KEYS if k in data}
    return run, {k: v for k, v in data.items() if k not in RUN_KEYS}


@sweep.command("run")
@click.argument("spec_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--detach", is_flag=True, help="Submit and return at once (prints the sweep's id).")
@click.option("--no-stream", is_flag=True, help="Do not print the sweep's log while waiting.")
def run(spec_file: Path, detach: bool, no_stream: bool) -> None:
    """Run the sweep SPEC_FILE describes; wait for it, print its best trial, exit with its
    result. The project is found relative to the spec file (default: its folder)."""
    import mlflow

    from flowyard.backend_config import BackendOptions
    from flowyard.workspace import Workspace

    run_keys, spec = read_spec(spec_file)
    compute = run_keys.get("compute")
    config = dict(run_keys.get("backend_config") or {})
    if compute:
        config["COMPUTE"] = compute
    config["SWEEP"] = spec
    if no_stream:
        config["STREAM_OUTPUT"] = False
    BackendOptions.parse(config)  # the spec and every key checked before anything is fetched
    project = str(run_keys.get("project", "."))
    if "://" not in project and not Path(project).is_absolute():
        project = str((spec_file.parent / project).resolve())
    ws = Workspace.from_config()
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    from mlflow.exceptions import ExecutionException

    try:
        submitted = mlflow.projects.run(
            project,
            entry_point=str(run_keys.get("entry_point", "main")),
            version=run_keys.get("version"),
            parameters=dict(run_keys.get("parameters") or {}),
            experiment_name=run_keys.get("experiment"),
            backend="flowyard",
            run_name=run_keys.get("run_name"),
            backend_config=config,
            synchronous=not detach,
        )
    except FlowyardError:
        raise
    except ExecutionException:
        sys.exit(1)  # the sweep failed, and wait() has said why
    if detach:
        click.echo(submitted.run_id)


@sweep.command("show")
@click.argument("sweep_id")
def show(sweep_id: str) -> None:
    """A sweep's progress and its trials, best first."""
    from flowyard.sweep import TRIAL_HEADER, summary, trial_rows

    found = workspace_client().get_sweep(sweep_id)
    click.echo(summary(found))
    print_table(TRIAL_HEADER, trial_rows(found))
