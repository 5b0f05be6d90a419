"""`flowyard compute ...`: the compute targets jobs run on."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from flowyard.cli.common import print_table, workspace_client
from flowyard.schemas import REGISTERED_TYPES, ComputeOut, ComputeType


def _settings(
    num_cpus: float | None,
    num_gpus: float | None,
    memory: int | None,
    max_retries: int | None,
    python: str | None,
    isolation: str | None,
    container_engine: str | None = None,
    container_volumes: tuple[str, ...] = (),
    isolation_image: str | None = None,
) -> dict[str, Any]:
    resources = {
        k: v
        for k, v in {"num_cpus": num_cpus, "num_gpus": num_gpus, "memory": memory}.items()
        if v is not None
    }
    settings: dict[str, Any] = {"resources": resources} if resources else {}
    if max_retries is not None:
        settings["max_retries"] = max_retries
    if python:
        settings["python"] = python
    if isolation:
        settings["isolation"] = isolation
    if container_engine:
        settings["container_engine"] = container_engine
    if container_volumes:
        settings["container_volumes"] = list(container_volumes)
    if isolation_image:
        settings["isolation_image"] = isolation_image
    return settings


def _print(compute: ComputeOut) -> None:
    shown = compute.model_dump(mode="json")
    if compute.health_checked_at is not None:
        age = (datetime.now(UTC) - compute.health_checked_at).total_seconds()
        shown["health_checked"] = f"{max(age, 0):.0f} s ago"
    click.echo(json.dumps(shown, indent=2))


def _slots(compute: ComputeOut) -> str:
    # local has no slots: each submitting machine runs its own jobs at once.
    if compute.type == ComputeType.LOCAL:
        return f"{compute.active_jobs} running"
    return f"{compute.active_jobs} of {compute.max_concurrent_jobs}"


_options = [
    click.option("--address", help="ray: the cluster's dashboard URL, e.g. http://head:8265"),
    click.option("--max-concurrent-jobs", type=click.IntRange(min=1), help="slots"),
    click.option("--workspace-url", help="the workspace's URL as the compute's runners see it"),
    click.option("--num-cpus", type=float, help="default CPUs per job (ray)"),
    click.option("--num-gpus", type=float, help="default GPUs per job (ray)"),
    click.option("--memory", type=int, help="default memory per job in bytes (ray)"),
    click.option("--max-retries", type=click.IntRange(min=0), help="default MAX_RETRIES"),
    click.option("--python", help="ray: the Python command on the cluster (default: python)"),
    click.option(
        "--isolation",
        type=click.Choice(["sandbox", "container", "none"]),
        help="process: sandbox (default) runs each job in bubblewrap, away from the workspace's "
        "files; container runs each in a container of --isolation-image, which shows it only "
        "its own folder and environment; none runs it as the server's user, able to read them",
    ),
    click.option(
        "--isolation-image",
        help="process, with --isolation container: the image every job runs in (it needs a "
        "shell and the C library; the job's environment is built on the host and mounted)",
    ),
    click.option(
        "--container-engine",
        type=click.Choice(["podman", "docker"]),
        help="the engine for docker_env jobs (default: the first of podman and docker that works)",
    ),
    click.option(
        "--container-volume",
        "container_volumes",
        multiple=True,
        help="a host folder docker_env jobs' volumes may mount (repeat for more; default none)",
    ),
]


def _with_options(fn: Any) -> Any:
    for option in reversed(_options):
        fn = option(fn)
    return fn


@click.group("compute")
def compute() -> None:
    """Create, list, change and delete compute targets."""


@compute.command("create")
@click.argument("name")
@click.option(
    "--type", "kind", type=click.Choice([t.value for t in REGISTERED_TYPES]), required=True
)
@_with_options
def create(
    name: str,
    kind: str,
    address: str | None,
    max_concurrent_jobs: int | None,
    workspace_url: str | None,
    num_cpus: float | None,
    num_gpus: float | None,
    memory: int | None,
    max_retries: int | None,
    python: str | None,
    isolation: str | None,
    container_engine: str | None,
    container_volumes: tuple[str, ...],
    isolation_image: str | None,
) -> None:
    """Register a compute target NAME."""
    created = workspace_client().create_compute(
        name,
        ComputeType(kind),
        address=address,
        max_concurrent_jobs=max_concurrent_jobs,
        workspace_url=workspace_url,
        settings=_settings(
            num_cpus,
            num_gpus,
            memory,
            max_retries,
            python,
            isolation,
            container_engine,
            container_volumes,
            isolation_image,
        ),
    )
    _print(created)


@compute.command("update")
@click.argument("name")
@_with_options
def update(
    name: str,
    address: str | None,
    max_concurrent_jobs: int | None,
    workspace_url: str | None,
    num_cpus: float | None,
    num_gpus: float | None,
    memory: int | None,
    max_retries: int | None,
    python: str | None,
    isolation: str | None,
    container_engine: str | None,
    container_volumes: tuple[str, ...],
    isolation_image: str | None,
) -> None:
    """Change a compute target's settings (those given)."""
    client = workspace_client()
    current = client.get_compute(name)
    given = _settings(
        num_cpus,
        num_gpus,
        memory,
        max_retries,
        python,
        isolation,
        container_engine,
        container_volumes,
        isolation_image,
    )
    settings = {**current.settings, **given}
    if isolation and isolation != "container" and not isolation_image:
        # The image was the old isolation's: leaving container isolation lets go of it.
        settings.pop("isolation_image", None)
    updated = client.update_compute(
        name,
        address=address,
        max_concurrent_jobs=max_concurrent_jobs,
        workspace_url=workspace_url,
        settings=settings,
    )
    _print(updated)


@compute.command("list")
def list_computes() -> None:
    rows = [
        (c.name, c.type, c.address or "", _slots(c), str(c.queued_jobs))
        for c in workspace_client().list_computes()
    ]
    print_table(("name", "type", "address", "slots used", "queued"), rows)


@compute.command("show")
@click.argument("name")
def show(name: str) -> None:
    """A compute's settings, load, isolation and health."""
    _print(workspace_client().get_compute(name, health=True))


@compute.command("delete")
@click.argument("name")
def delete(name: str) -> None:
    workspace_client().delete_compute(name)
    click.echo(f"deleted {name}")
