"""What every view of a job shows: its phases' times, its links, its latest metrics, its outputs.

Metrics and outputs are MLflow's, read through MLflow's REST API with the client's own
connection rather than through ``mlflow.MlflowClient``: `flowyard job watch` would otherwise
import MLflow, a second and a half before it shows anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowyard.client import Client
from flowyard.errors import FlowyardError
from flowyard.schemas import JobOut, JobStatus

PHASES = (JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING, JobStatus.FINALIZING)
# Outputs named in a summary; the rest are counted.
OUTPUTS_SHOWN = 5
_MLFLOW_API = "/api/2.0/mlflow"


def studio_url(workspace_url: str, job: JobOut) -> str:
    return f"{workspace_url}/studio/jobs/{job.id}"


def mlflow_url(workspace_url: str, job: JobOut) -> str:
    return f"{workspace_url}/#/experiments/{job.experiment_id}/runs/{job.run_id}"


def _utc(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def phase_times(job: JobOut, now: datetime | None = None) -> dict[JobStatus, float]:
    """Seconds spent in each phase so far, from the job's events (a requeued job's phases add
    up over its attempts); a phase it never entered is left out."""
    now = _utc(now or datetime.now(UTC))
    times: dict[JobStatus, float] = {}
    events = sorted(job.events, key=lambda e: e.at)
    for event, following in zip(events, [*events[1:], None], strict=True):
        if event.to_status not in PHASES:
            continue
        end = _utc(following.at) if following else now
        took = max(0.0, (end - _utc(event.at)).total_seconds())
        times[event.to_status] = times.get(event.to_status, 0.0) + took
    return times


def total_time(job: JobOut, now: datetime | None = None) -> float | None:
    """From submission to the end (or to now, for a job still going)."""
    if not job.events:
        return None
    start = _utc(min(e.at for e in job.events))
    end = _utc(job.ended_at) if job.ended_at else _utc(now or datetime.now(UTC))
    return max(0.0, (end - start).total_seconds())


def duration_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def phases_text(job: JobOut, now: datetime | None = None) -> str:
    """``queued 0.2 s · preparing 1.3 s · running 52 s · finalizing 0.1 s``"""
    times = phase_times(job, now)
    return " · ".join(f"{p} {duration_text(times[p])}" for p in PHASES if p in times)


def number_text(value: float) -> str:
    """A metric's value, short: 4 significant digits, as the studio shows it."""
    if math.isnan(value) or math.isinf(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}"


@dataclass(frozen=True)
class Output:
    path: str
    size: int


@dataclass(frozen=True)
class RunData:
    """What MLflow holds of a job's run: its name, latest metrics, and the files under
    ``outputs/`` (what the runner uploaded from ./outputs)."""

    run_name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: list[Output] = field(default_factory=list)
    outputs_total: int = 0


def _mlflow_get(client: Client, path: str, params: dict[str, Any]) -> dict[str, Any]:
    body = client.request("GET", client.url + _MLFLOW_API + path, params=params)
    return body if isinstance(body, dict) else {}


def run_data(client: Client, run_id: str, *, outputs: bool = True) -> RunData:
    """The run's name, latest metrics and outputs; empty when MLflow cannot say (the workspace
    gone, or the run deleted): a view must not fail for want of them."""
    try:
        run = _mlflow_get(client, "/runs/get", {"run_id": run_id}).get("run", {})
        metrics = {str(m["key"]): float(m["value"]) for m in run.get("data", {}).get("metrics", [])}
        files = _output_files(client, run_id) if outputs else []
    except (FlowyardError, KeyError, TypeError, ValueError):
        return RunData()
    return RunData(
        run_name=str(run.get("info", {}).get("run_name", "")),
        metrics=dict(sorted(metrics.items())),
        outputs=files[:OUTPUTS_SHOWN],
        outputs_total=len(files),
    )


def _output_files(client: Client, run_id: str, path: str = "outputs") -> list[Output]:
    files: list[Output] = []
    listed = _mlflow_get(client, "/artifacts/list", {"run_id": run_id, "path": path})
    for entry in listed.get("files", []):
        if entry.get("is_dir"):
            files += _output_files(client, run_id, entry["path"])
        else:
            files.append(Output(str(entry["path"]), int(entry.get("file_size", 0))))
    return files


def metric_history(client: Client, run_id: str, key: str) -> list[float]:
    """A metric's values in the order logged (by step, then time); empty when unreadable."""
    try:
        body = _mlflow_get(client, "/metrics/get-history", {"run_id": run_id, "metric_key": key})
        points = sorted(body.get("metrics", []), key=lambda m: (m["step"], m["timestamp"]))
        return [float(m["value"]) for m in points]
    except (FlowyardError, KeyError, TypeError, ValueError):
        return []
