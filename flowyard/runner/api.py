"""The runner's calls to the workspace, in plain JSON.

A runner starts for every job, and its imports come before the job's own code starts: the API's
pydantic models (`flowyard.schemas`) would add about a tenth of a second to every job. The runner
sends and reads the same JSON shapes through :meth:`Client.request` without them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from flowyard import log_ranges
from flowyard.client import Client
from flowyard.jobspec import EnvironmentSpec, JobOptions
from flowyard.status import JobStatus


@dataclass
class ErrorReport:
    """Why a job failed (the JSON of `schemas.ErrorInfo`)."""

    type: str | None = None
    message: str | None = None
    traceback: str | None = None
    exit_code: int | None = None
    signal: str | None = None


@dataclass(frozen=True)
class ClaimedJob:
    """What the runner needs of the job it claimed (fields of `schemas.JobOut`)."""

    id: str
    experiment_id: str
    snapshot_id: str
    entry_point: str
    parameters: dict[str, str]
    environment: EnvironmentSpec
    options: JobOptions
    # Where ./outputs goes; "" from a workspace that does not say (MLflow's client finds it).
    artifact_uri: str
    attempt: int
    cancel_requested: bool
    log_size: int
    # Its secret ENV_VARS: the workspace hands them to the job's own runner only.
    secret_env: dict[str, str]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ClaimedJob:
        return cls(
            id=str(body["id"]),
            experiment_id=str(body["experiment_id"]),
            snapshot_id=str(body["snapshot_id"]),
            entry_point=str(body["entry_point"]),
            parameters={str(k): str(v) for k, v in body["parameters"].items()},
            environment=EnvironmentSpec.from_json(body["environment"]),
            options=JobOptions.from_json(body["options"]),
            artifact_uri=str(body.get("artifact_uri") or ""),
            attempt=int(body["attempt"]),
            cancel_requested=bool(body["cancel_requested"]),
            log_size=int(body["log_size"]),
            secret_env={str(k): str(v) for k, v in (body.get("secret_env") or {}).items()},
        )


class RunnerApi:
    """One job's calls: claim it, send its log, beat, report its status. Each call is one
    request; the runner retries them."""

    def __init__(self, client: Client, job_id: str) -> None:
        self.client = client
        self.path = f"/jobs/{job_id}"

    def start(self, host: str, pid: int, instance: str) -> ClaimedJob:
        body = self.client.request(
            "POST", f"{self.path}/start", json={"host": host, "pid": pid, "instance": instance}
        )
        return ClaimedJob.from_json(body)

    def append_log(self, offset: int, data: bytes, stderr: Sequence[tuple[int, int]] = ()) -> int:
        """Append ``data`` at ``offset``, ``stderr`` naming the ranges of it the job's stderr
        wrote; returns the log's size after the append."""
        params: dict[str, int | str] = {"offset": offset}
        if stderr:
            params["stderr"] = log_ranges.encode(stderr)
        body = self.client.request("POST", f"{self.path}/logs", params=params, content=data)
        return int(body["size"])

    def heartbeat(self) -> bool:
        """Returns whether the user asked for a cancel."""
        return bool(self.client.request("POST", f"{self.path}/heartbeat")["cancel_requested"])

    def report(
        self,
        status: JobStatus,
        reason: str,
        error: ErrorReport | None = None,
        exit_code: int | None = None,
    ) -> None:
        body = {
            "status": status.value,
            "reason": reason,
            "error": asdict(error) if error is not None else None,
            "exit_code": exit_code,
        }
        self.client.request("POST", f"{self.path}/status", json=body)
