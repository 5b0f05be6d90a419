"""The MLflow project backend named `flowyard` (entry point group `mlflow.project_backend`)."""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import replace
from typing import Any

from mlflow.projects.backend.abstract_backend import AbstractBackend

from flowyard import display, mlflow_internals
from flowyard.backend_config import LOCAL, BackendOptions
from flowyard.client import Client
from flowyard.compute import launcher
from flowyard.env import builder, containers
from flowyard.errors import ConfigError, FlowyardError, NotAWorkspaceError
from flowyard.mlflow_errors import as_execution_exception
from flowyard.prepared_project import PreparedProject, prepare
from flowyard.schemas import JobStatus, JobSubmit, StatusUpdate, SweepSubmit
from flowyard.submitted_run import FlowyardSubmittedRun


def connect(tracking_uri: str) -> tuple[Client, dict[str, Any]]:
    """A client for the workspace at ``tracking_uri``, and what the workspace says it is; one
    clear sentence if it is not a workspace."""
    advice = (
        f"The tracking URI {tracking_uri} is not a Flowyard workspace; call "
        "mlflow.set_tracking_uri(Workspace.from_config().get_mlflow_tracking_uri())."
    )
    if not tracking_uri.startswith(("http://", "https://")):
        raise NotAWorkspaceError(advice)
    client = Client(tracking_uri)
    try:
        info = client.info()
    except NotAWorkspaceError as e:
        raise NotAWorkspaceError(advice) from e
    return client, info


def _run_tags(
    prepared: PreparedProject, options: BackendOptions, version: str | None
) -> dict[str, str]:
    from flowyard.snapshot import git_info

    tags = {
        "mlflow.user": getpass.getuser(),
        "mlflow.source.name": mlflow_internals.source_name(prepared.uri),
        "mlflow.source.type": "PROJECT",
        "mlflow.project.entryPoint": prepared.entry_point,
        "mlflow.project.env": prepared.environment.manager.value,
        **git_info(prepared.work_dir),
    }
    if version:
        tags["mlflow.source.git.commit"] = tags.get("mlflow.source.git.commit", version)
    tags.update(options.tags)
    return tags


def submit(
    project_uri: str,
    entry_point: str,
    params: dict[str, Any] | None,
    version: str | None,
    backend_config: dict[str, Any] | str | None,
    tracking_uri: str,
    experiment_id: str,
    run_name: str | None = None,
) -> FlowyardSubmittedRun:
    """Check everything, then snapshot the code, create the job and start it."""
    from flowyard.snapshot import build_manifest, upload

    options = BackendOptions.parse(backend_config)
    client, info = connect(tracking_uri)
    if options.compute != LOCAL:
        client.get_compute(options.compute)  # unknown → lists the known ones
    checked = dict(params or {})
    if options.sweep is not None:
        # The entry point is checked with a value of each searched parameter's space (its
        # trials get theirs); the sweep's own run keeps only the parameters trials share.
        for name, dimension in options.sweep.search_space.items():
            checked.setdefault(name, dimension.example())
    prepared = prepare(
        project_uri,
        version,
        entry_point,
        checked,
        build_env=options.builds_environment,
        searched=options.sweep.search_space if options.sweep else (),
    )
    if options.sweep is not None:
        options.sweep.check_types(
            {name: p.type for name, p in prepared.entry_point_spec.parameters.items()}
        )
    environment, secret_env = prepared.environment, options.secret_env
    if environment.container:
        environment = replace(environment, run_args=options.docker_args)
        # Copied from this machine as MLflow copies them; secret, since such variables are
        # mostly credentials (masked in the log, stored sealed).
        secret_env = {**containers.copied_env(environment, os.environ), **secret_env}
        if options.compute == LOCAL:
            containers.check_image(containers.engine(), str(environment.image))
    elif options.compute == LOCAL:
        builder.check_python(prepared.environment, str(info["mlflow_version"]))
    with display.snapshot_progress(sys.stderr, quiet=not options.stream_output) as progress:
        manifest = build_manifest(
            prepared.work_dir,
            max_mb=options.snapshot_max_mb,
            max_files=options.snapshot_max_files,
            progress=progress,
        )
        if report := manifest.left_out_report():
            print(report, file=sys.stderr)
        tags = _run_tags(prepared, options, version)
        snapshot = upload(client, manifest, progress=progress)
    body = JobSubmit(
        experiment_id=str(experiment_id),
        snapshot_id=snapshot.id,
        project_uri=project_uri,
        entry_point=prepared.entry_point,
        parameters=prepared.parameters,
        environment=environment,
        options=options.job_options(prepared.command, prepared.entry_point_spec),
        compute=options.compute,
        priority=options.priority,
        max_retries=options.max_retries,
        run_name=run_name,
        user=tags["mlflow.user"],
        tags=tags,
        secret_env=secret_env,
    )
    if options.sweep is not None:
        job = client.submit_sweep(SweepSubmit(job=body, spec=options.sweep.to_json()))
        return FlowyardSubmittedRun(
            client, job, stream_output=options.stream_output, snapshot=snapshot
        )
    job = client.submit_job(body)
    try:
        if options.compute == LOCAL:
            launcher.start_here(client.url, job.id, job.runner_token)
    except (OSError, ConfigError) as e:
        # Reporting a job's status is its runner's call, made with the job's own token.
        with Client(client.url, token=job.runner_token) as runner:
            runner.update_status(
                job.id, StatusUpdate(status=JobStatus.FAILED, reason=f"runner did not start: {e}")
            )
        raise
    return FlowyardSubmittedRun(client, job, stream_output=options.stream_output, snapshot=snapshot)


class FlowyardBackend(AbstractBackend):  # type: ignore[misc]
    """``mlflow.projects.run(uri, backend="flowyard", backend_config={...})``."""

    def run(
        self,
        project_uri: str,
        entry_point: str,
        params: dict[str, Any],
        version: str | None,
        backend_config: dict[str, Any],
        tracking_uri: str,
        experiment_id: str,
    ) -> FlowyardSubmittedRun:
        try:
            run = submit(
                project_uri,
                entry_point,
                params,
                version,
                backend_config,
                tracking_uri,
                experiment_id,
            )
        except FlowyardError as e:
            raise as_execution_exception(e) from e.__cause__
        if not backend_config.get("SYNCHRONOUS", True):
            # Nobody waits (`mlflow run -b flowyard` never does): say where the job is, on
            # stderr, leaving stdout to what the caller prints.
            print(run.announcement(follow=True), file=sys.stderr, flush=True)
        return run
