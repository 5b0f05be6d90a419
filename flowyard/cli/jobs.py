"""`flowyard job ...` and `flowyard run`: submit, watch and stop jobs."""

from __future__ import annotations

import sys
import time

import click
from rich.console import Console
from rich.table import Table

from flowyard import defaults
from flowyard.cli.common import print_table, workspace_client
from flowyard.errors import InvalidRequestError
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
    from flowyard.submitted_run import run_url

    client = workspace_client()
    j = client.get_job(job_id)
    out = Console()
    out.print(f"[bold]{j.run_id}[/bold] {j.status}  ({run_url(client.url, j)})")
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
    from flowyard.submitted_run import FlowyardSubmittedRun

    client = workspace_client()
    run = FlowyardSubmittedRun(client, client.get_job(job_id), stream_output=False)
    run.cancel()
    click.echo(f"{job_id}: {run.job.status}")


def _parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InvalidRequestError(f"-P {pair!r} is not NAME=VALUE; write e.g. -P alpha=0.3.")
        params[name] = value
    return params


@click.command("run")
@click.argument("uri", default=".")
@click.option("-e", "--entry-point", default="main", show_default=True)
@click.option("-P", "--param", "params", multiple=True, help="A parameter, NAME=VALUE.")
@click.option("-v", "--version", help="A git commit or branch, for a git URI.")
@click.option("--compute", default="local", show_default=True)
@click.option("--experiment", "experiment_name", help="Experiment name (created if new).")
@click.option("--run-name")
@click.option("--detach", is_flag=True, help="Submit and return at once.")
def run(
    uri: str,
    entry_point: str,
    params: tuple[str, ...],
    version: str | None,
    compute: str,
    experiment_name: str | None,
    run_name: str | None,
    detach: bool,
) -> None:
    """Submit the MLflow project at URI, follow its log, and exit with its result."""
    import mlflow

    ws = Workspace.from_config()
    mlflow.set_tracking_uri(ws.get_mlflow_tracking_uri())
    submitted = mlflow.projects.run(
        uri,
        entry_point=entry_point,
        version=version,
        parameters=_parse_params(params),
        experiment_name=experiment_name,
        backend="flowyard",
        run_name=run_name,
        backend_config={"COMPUTE": compute},
        synchronous=False,
    )
    if detach:
        click.echo(submitted.run_id)
        return
    sys.exit(0 if submitted.wait() else 1)
