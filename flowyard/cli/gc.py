"""`flowyard gc`: collect the workspace's garbage now."""

from __future__ import annotations

import click

from flowyard.cli.common import workspace_client


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Count what would be freed; remove nothing.")
def gc(dry_run: bool) -> None:
    """Free what nothing refers to: jobs past their retention policy (`flowyard retention`),
    snapshots no job ran and blobs no snapshot holds (unused for the server's grace period),
    the folders of ended jobs on the server's host, its blob cache past its bound, and its
    job environments unused for 30 days or past their bound (never one in use). The
    server also does this on its own, every hour by default."""
    from rich.filesize import decimal

    done = workspace_client().gc(dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    total = (
        done.expired_bytes
        + done.blob_bytes
        + done.job_folder_bytes
        + done.cache_bytes
        + done.environment_bytes
    )
    click.echo(f"{verb} {decimal(total)}:")
    click.echo(f"  {done.expired_jobs} job(s) past retention, {decimal(done.expired_bytes)}")
    click.echo(f"  {done.snapshots} snapshot(s)")
    click.echo(f"  {done.blobs} blob(s), {decimal(done.blob_bytes)}")
    click.echo(f"  {done.job_folders} job folder(s), {decimal(done.job_folder_bytes)}")
    click.echo(f"  {done.cache_blobs} cached blob(s), {decimal(done.cache_bytes)}")
    click.echo(f"  {done.environments} job environment(s), {decimal(done.environment_bytes)}")
    click.echo(f"  {done.job_images} job image(s)")
