"""`flowyard job ...` and `flowyard run`: submit, watch and stop jobs."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from flowyard import defaults
from flowyard.backend_config import ENV_MANAGERS, BackendOptions
from flowyard.cli.common import print_table, workspace_client
from flowyard.errors import FlowyardError, InvalidRequestError
from flowyard.schemas import JobStatus
from flowyard.workspace import Workspace


@click.group("job")
def job() -> None:
    """List, inspect, follow and cancel jobs."""


@job.command("list")
@click.option("--status", type=click.Choice([s.value for s in JobStatus]))
@click.option("--compute")
@click.option("--limit", default=50, show_default=True)
def list_jobs(status: str | None, compute: str | None, limit: int) -> None:
    """The newest jobs first."""
    jobs = workspace_client().list_jobs(status=status, compute=compute, limit=limit)
    header = ("run id", "status", "entry point", "compute", "user", "submitted")
    rows = [
        (
            j.run_id,
            j.status,
            j.entry_point,
            j.compute,
            j.user,
            j.submitted_at.strftime("%Y-%m-%d %H:%M:%S"),
        )
        for j in jobs
    ]
    print_table(header, rows)


@job.command("show")
@click.argument("job_id")
def show(job_id: str) -> None:
    """A job's settings, status timeline and error."""
    from flowyard.display.facts import mlflow_url

    client = workspace_client()
    j = client.get_job(job_id)
    out = Console()
    out.print(f"[bold]{j.run_id}[/bold] {j.status}  ({mlflow_url(client.url, j)})")
    out.print(f"entry point {j.entry_point}  parameters {j.parameters}")
    out.print(f"compute {j.compute}  snapshot {j.snapshot_id[:12]}  user {j.user}")
    if j.status == JobStatus.QUEUED and j.waiting_reason:
        out.print(f"waiting: {j.waiting_reason}")
    timeline = Table("at", "from", "to", "reason")
    for e in j.events:
        timeline.add_row(
            e.at.strftime("%H:%M:%S.%f")[:-3], e.from_status or "", e.to_status, e.reason
        )
    out.print(timeline)
    if j.error:
        out.print(f"[red]{j.error.type or 'error'}: {j.error.message or ''}[/red]")
        if j.error.traceback:
            out.print(j.error.traceback, markup=False, highlight=False)


@job.command("logs")
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job_id: str, follow: bool) -> None:
    """Print a job's log (stdout and stderr, in order)."""
    client = workspace_client()
    offset = 0
    wait = defaults.LOG_WAIT_S if follow else 0
    while True:
        asked = time.monotonic()
        data, status, size = client.read_log(job_id, offset, wait=wait)
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        offset += len(data)
        # The workspace answers a page at a time: read on to the size it reported.
        if (status.is_final or not follow) and (offset >= size or not data):
            return
        if not data:
            # Only an older workspace answers at once with nothing new: poll it.
            time.sleep(max(0.0, 0.2 - (time.monotonic() - asked)))


@job.command("cancel")
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Stop a job; waits until it has stopped."""
    from flowyard.job import Job

    client = workspace_client()
    run = Job(client, client.get_job(job_id), stream_output=False)
    run.cancel()
    click.echo(f"{job_id}: {run.job.status}")


@job.command("delete")
@click.argument("job_ids", nargs=-1)
@click.option("--status", type=click.Choice([s.value for s in JobStatus if s.is_final]))
@click.option("--experiment-id")
@click.option("--compute")
@click.option("--user")
@click.option(
    "--older-than",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Only jobs that ended more than DAYS days ago.",
)
@click.option("--yes", "-y", is_flag=True, help="Delete without asking.")
def delete(
    job_ids: tuple[str, ...],
    status: str | None,
    experiment_id: str | None,
    compute: str | None,
    user: str | None,
    older_than: float | None,
    yes: bool,
) -> None:
    """Delete jobs for good: their MLflow runs, artifacts, logs and events.

    Name the jobs, or choose them by filter (jobs that have not ended are left, and listed).
    A job that has not ended is refused: cancel it first.
    """
    from datetime import UTC, datetime, timedelta

    from flowyard.cli.common import confirm, print_deleted

    ended_before = (
        datetime.now(UTC) - timedelta(days=older_than) if older_than is not None else None
    )
    filters = {
        "status": status,
        "experiment id": experiment_id,
        "compute": compute,
        "user": user,
        "ended before": ended_before.strftime("%Y-%m-%d %H:%M UTC") if ended_before else None,
    }
    given = {k: v for k, v in filters.items() if v is not None}
    if bool(job_ids) == bool(given):
        raise click.UsageError(
            "Name the jobs to delete, or choose them with --status, --experiment-id, "
            "--compute, --user or --older-than (not both)."
        )
    client = workspace_client()
    if job_ids:
        what = f"{len(job_ids)} job(s) ({', '.join(job_ids)})"
    else:
        shown = ", ".join(f"{k} {v}" for k, v in given.items())
        what = f"every ended job with {shown}"
    confirm(f"Delete {what} for good, with their runs, artifacts and logs?", yes)
    if job_ids:
        for job_id in job_ids:
            print_deleted(client.delete_job(job_id))
    else:
        done = client.delete_jobs(
            status=JobStatus(status) if status else None,
            experiment_id=experiment_id,
            compute=compute,
            user=user,
            ended_before=ended_before,
        )
        print_deleted(done)


@job.command("watch")
@click.argument("job_id")
def watch(job_id: str) -> None:
    """A live view of a job until it ends: status, timeline, metrics, log tail.

    Exits 0 when the job completed, 1 when it failed or was canceled; Ctrl-C stops watching,
    not the job.
    """
    from flowyard.display.watch import watch as watch_job

    sys.exit(watch_job(workspace_client(), job_id, sys.stdout))


def _pairs(flag: str, pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidRequestError(f"{flag} {pair!r} is not NAME=VALUE; write e.g. {flag} a=1.")
        values[name] = value
    return values


def _secret_env(names: tuple[str, ...]) -> dict[str, dict[str, object]]:
    """``--secret-env NAME`` takes the value from this shell's environment (so it is in neither
    the shell's history nor the process list); ``NAME=VALUE`` is accepted too."""
    secrets: dict[str, dict[str, object]] = {}
    for item in names:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in os.environ:
                raise InvalidRequestError(
                    f"--secret-env {name}: no variable {name} is set here; export it first, or "
                    f"pass --secret-env {name}=VALUE."
                )
            value = os.environ[name]
        secrets[name] = {"value": value, "secret": True}
    return secrets


def _backend_config(path_or_json: str | None) -> dict[str, Any]:
    """``-c``: a JSON file, or JSON text, as `mlflow run --backend-config` takes."""
    if not path_or_json:
        return {}
    if path_or_json.lstrip().startswith("{"):
        try:
            config = json.loads(path_or_json)
        except ValueError as e:
            raise InvalidRequestError(f"--backend-config is not valid JSON ({e}).") from e
    else:
        config = BackendOptions.read_file(Path(path_or_json))
    return dict(config)


@click.command("run")
@click.argument("uri", default=".")
@click.option("-e", "--entry-point", default="main", show_default=True)
@click.option("-P", "--param-list", "params", multiple=True, help="A parameter, NAME=VALUE.")
@click.option("-v", "--version", help="A git commit or branch, for a git URI.")
@click.option("--experiment-name", "--experiment", help="Experiment name (created if new).")
@click.option("--experiment-id", help="Experiment id (instead of a name).")
@click.option("--run-name")
@click.option(
    "--env-manager",
    type=click.Choice(sorted(ENV_MANAGERS)),
    help="'local': the compute's Python; anything else: the project's environment, built.",
)
@click.option(
    "-c",
    "--backend-config",
    help="backend_config as a JSON file or JSON text; the options below override its keys.",
)
@click.option("--compute", help="COMPUTE: a compute target's name, or local (this machine).")
@click.option("--use-conda/--no-use-conda", default=None, help="USE_CONDA.")
@click.option("--timeout", type=float, help="TIMEOUT: seconds the entry point may run.")
@click.option("--env", "env_vars", multiple=True, help="ENV_VARS: NAME=VALUE, repeatable.")
@click.option(
    "--secret-env",
    multiple=True,
    help="A secret ENV_VARS entry: NAME (its value from this shell) or NAME=VALUE; repeatable.",
)
@click.option("--tag", "tags", multiple=True, help="TAGS: NAME=VALUE, repeatable.")
@click.option("--priority", type=int, help="PRIORITY: higher runs sooner on a busy compute.")
@click.option("--max-retries", type=int, help="MAX_RETRIES after an infrastructure failure.")
@click.option("--num-cpus", type=float, help="NUM_CPUS to reserve (ray).")
@click.option("--num-gpus", type=float, help="NUM_GPUS to reserve (ray).")
@click.option("--memory", type=float, help="MEMORY in bytes to reserve (ray).")
@click.option("--snapshot-max-mb", type=float, help="SNAPSHOT_MAX_MB.")
@click.option("--snapshot-max-files", type=int, help="SNAPSHOT_MAX_FILES.")
@click.option("--no-stream", is_flag=True, help="STREAM_OUTPUT false: do not print the log.")
@click.option("--detach", is_flag=True, help="Submit and return at once.")
def run(
    uri: str,
    entry_point: str,
    params: tuple[str, ...],
    version: str | None,
    experiment_name: str | None,
    experiment_id: str | None,
    run_name: str | None,
    env_manager: str | None,
    backend_config: str | None,
    env_vars: tuple[str, ...],
    secret_env: tuple[str, ...],
    tags: tuple[str, ...],
    no_stream: bool,
    detach: bool,
    **keys: Any,
) -> None:
    """Submit the MLflow project at URI, follow its log, and exit with its result.

    Takes `mlflow run`'s own flags, and each backend_config key as an option.
    """
    import mlflow

    config = _backend_config(backend_config)
    for option, value in keys.items():
        if value is not None:
            config[option.upper()] = value
    if env_vars or secret_env:
        config["ENV_VARS"] = {
            **(config.get("ENV_VARS") or {}),
            **_pairs("--env", env_vars),
            **_secret_env(secret_env),
        }
    if tags:
        config["TAGS"] = {**(config.get("TAGS") or {}), **_pairs("--tag", tags)}
    if no_stream:
        config["STREAM_OUTPUT"] = False
    BackendOptions.parse(config)  # every key checked before anything is fetched or created
    ws = Workspace.from_config()
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    from mlflow.exceptions import ExecutionException

    try:
        submitted = mlflow.projects.run(
            uri,
            entry_point=entry_point,
            version=version,
            parameters=_pairs("-P", params),
            experiment_name=experiment_name,
            experiment_id=experiment_id,
            backend="flowyard",
            run_name=run_name,
            env_manager=env_manager,
            backend_config=config,
            synchronous=not detach,
        )
    except FlowyardError:
        raise  # refused before it ran: the CLI prints the one-sentence reason
    except ExecutionException:
        sys.exit(1)  # the run failed, and wait() has said why
    if detach:
        click.echo(submitted.run_id)
