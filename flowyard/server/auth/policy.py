"""Which role a request needs, and what a job's token may touch. Pure functions of the request.

One table for every endpoint the server answers — Flowyard's API, the studio, and MLflow's
tracking API, artifact proxy and UI (which Flowyard mounts unchanged, so they are classified by
method and path here rather than decorated):

- reading (GET, HEAD, and MLflow's POST searches) needs ``reader``;
- tracking, submitting, cancelling and uploading need ``contributor``;
- computes, users, tokens and deleting anything need ``owner``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowyard import defaults
from flowyard.server.auth.tokens import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API = defaults.API_PREFIX
STUDIO = "/studio"

# Answered without a credential: a load balancer's probe, and what signing in needs.
_PUBLIC = re.compile(rf"^(?:{API}/health|/health|{STUDIO}/log(?:in|out)|{STUDIO}/static/.*)$")
_OWNER_API = re.compile(rf"^{API}/(?:users|tokens)(?:/.*)?$")
_COMPUTES = re.compile(rf"^{API}/computes(?:/.*)?$")
# MLflow's deletions: runs/delete, experiments/delete, registered-models/delete, ...
_MLFLOW_DELETE = re.compile(r"/(?:delete|permanently-delete)$")


def needed_role(method: str, path: str) -> Role | None:
    """The least role that may make this request; None when it is public."""
    if _PUBLIC.match(path):
        return None
    if _OWNER_API.match(path):
        return Role.OWNER
    if method in SAFE_METHODS:
        return Role.READER
    if _COMPUTES.match(path) or method == "DELETE" or _MLFLOW_DELETE.search(path):
        return Role.OWNER
    if (path.endswith("/search") and "/mlflow/" in path) or path == "/graphql":
        return Role.READER  # MLflow's searches and its UI's GraphQL queries change nothing
    return Role.CONTRIBUTOR


@dataclass(frozen=True)
class JobFacts:
    """What a job's token is bound to."""

    id: str
    experiment_id: str
    snapshot_id: str


# Flowyard's calls a runner makes for its own job.
_RUNNER_CALL = re.compile(rf"^{API}/jobs/([0-9a-f]{{32}})(?:/(start|status|heartbeat|logs))?$")
_SNAPSHOT = re.compile(rf"^{API}/snapshots/([0-9a-f]{{64}})$")
_BLOB = re.compile(rf"^{API}/blobs/([0-9a-f]{{64}})$")
# A file (in the path) or a listing (``?path=`` on the bare route).
_ARTIFACT = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts(?:/(.+))?$")
_MLFLOW_API = re.compile(r"^/(?:api|ajax-api)/[23]\.0/mlflow/(.+)$")
_LOGGED_MODEL = re.compile(r"^logged-models/(m-[0-9a-f]{32})(?:/.*)?$")


@dataclass(frozen=True)
class JobScope:
    """What must hold for a job's token to be allowed, beyond the request's own words: a blob
    to be in the job's snapshot, or a logged model to come from the job's run."""

    allowed: bool
    blob: str | None = None
    logged_model: str | None = None


DENIED = JobScope(False)
ALLOWED = JobScope(True)


def job_scope(
    job: JobFacts, method: str, path: str, params: dict[str, str], body: dict[str, object] | None
) -> JobScope:
    """Whether a request made with ``job``'s token stays within that job.

    A job may report on itself, read its own snapshot, and log to its own MLflow run (params,
    metrics, tags, artifacts, models logged from it); it may delete nothing.
    """
    if method == "DELETE" or _MLFLOW_DELETE.search(path):
        return DENIED
    if path in (f"{API}/info", f"{API}/health", f"{API}/whoami"):
        return ALLOWED
    if m := _RUNNER_CALL.match(path):
        return JobScope(m[1] == job.id and (m[2] is not None or method in SAFE_METHODS))
    if m := _SNAPSHOT.match(path):
        return JobScope(method in SAFE_METHODS and m[1] == job.snapshot_id)
    if m := _BLOB.match(path):
        return JobScope(True, blob=m[1]) if method in SAFE_METHODS else DENIED
    if m := _ARTIFACT.match(path):
        parts = (m[1] or params.get("path", "")).strip("/").split("/")
        if parts[:2] == [job.experiment_id, job.id]:
            return ALLOWED
        if len(parts) > 3 and parts[0] == job.experiment_id and parts[1] == "models":
            return JobScope(True, logged_model=parts[2])
        return DENIED
    if m := _MLFLOW_API.match(path):
        return _mlflow_scope(job, m[1], params, body or {})
    return DENIED


def _mlflow_scope(
    job: JobFacts, endpoint: str, params: dict[str, str], body: dict[str, object]
) -> JobScope:
    values = {**params, **{k: v for k, v in body.items() if isinstance(v, str)}}
    if m := _LOGGED_MODEL.match(endpoint):
        return JobScope(True, logged_model=m[1])
    if endpoint == "logged-models":  # create: a model logged from this job's run
        return JobScope(
            values.get("source_run_id") == job.id
            and values.get("experiment_id") == job.experiment_id
        )
    if endpoint == "experiments/get":
        return JobScope(values.get("experiment_id") == job.experiment_id)
    run = values.get("run_id") or values.get("run_uuid")
    return JobScope(run == job.id)
