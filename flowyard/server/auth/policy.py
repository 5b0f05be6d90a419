"""Which role a request needs, which calls only a job's own runner may make, and what a job's
runs are tagged with. Pure functions of the request.

Flowyard's API and the studio are classified here by path; MLflow's tracking API, artifact proxy
and UI (which Flowyard mounts unchanged) route by route in :mod:`.mlflow_routes`:

- reading (GET, HEAD, and MLflow's POST searches) needs ``reader``;
- tracking, submitting, cancelling and uploading need ``contributor``;
- computes, users, tokens, garbage collection, retention policies and deleting anything need
  ``owner`` (reading the policies, a reader).

A job's token acts for the job's submitter as a contributor, and is the only credential that may
make its runner's calls (claim, status, heartbeat, log appends).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from flowyard import defaults
from flowyard.server.auth import mlflow_routes
from flowyard.server.auth.tokens import Role

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API = defaults.API_PREFIX
STUDIO = "/studio"

# Answered without a credential: a load balancer's probe, what signing in needs, and the icon a
# browser asks for on its own (before anyone signs in).
_PUBLIC = re.compile(rf"^(?:{API}/health|{STUDIO}/log(?:in|out)|{STUDIO}/static/.*|/favicon\.ico)$")
_FLOWYARD = re.compile(rf"^(?:{API}|{STUDIO})(?:/|$)")
_OWNER_API = re.compile(rf"^{API}/(?:users|tokens|gc)(?:/.*)?$")
_COMPUTES = re.compile(rf"^{API}/computes(?:/.*)?$")
_RETENTION = re.compile(rf"^{API}/retention(?:/.*)?$")
# Any job id's shape: the check must not depend on the id being well formed.
_RUNNER_CALL = re.compile(rf"^{API}/jobs/([^/]+)/(?:start|status|heartbeat|logs)/?$")


def needed_role(method: str, path: str) -> Role | None:
    """The least role that may make this request; None when it is public."""
    if _PUBLIC.match(path):
        return None
    if not _FLOWYARD.match(path):
        try:
            return mlflow_routes.role_of(method, path)
        except mlflow_routes.Unknown:
            return Role.OWNER  # a route not classified yet stays closed
    if _OWNER_API.match(path):
        return Role.OWNER
    if method in SAFE_METHODS:
        return Role.READER
    if _COMPUTES.match(path) or _RETENTION.match(path) or method == "DELETE":
        return Role.OWNER
    return Role.CONTRIBUTOR


def runner_call(method: str, path: str) -> str | None:
    """The job whose own runner alone may make this request (claim, report status, beat, append
    to its log), or None for any other request."""
    if method == "POST" and (m := _RUNNER_CALL.match(path)):
        return m[1]
    return None


@dataclass(frozen=True)
class JobFacts:
    """What a job's token is bound to: the job (and its MLflow run)."""

    id: str


JOB_TAG = "flowyard.job"
"""The tag on every run a job creates: the id of the job (and run) that created it."""
USER_TAG = "mlflow.user"
_RUN_CREATE = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/runs/create$")


def creates_run(method: str, path: str) -> bool:
    """Whether this request creates an MLflow run (whose user a job must not choose)."""
    return method == "POST" and _RUN_CREATE.match(path) is not None


def attribute_run(body: dict[str, object], job: JobFacts, user: str) -> dict[str, object]:
    """A ``runs/create`` body made by a job, as the submitter's run tagged with the job: its
    ``user_id`` and ``mlflow.user`` tag are the submitter, whatever the job sent.

    Raises:
        ValueError: ``tags`` is not a list.
    """
    tags = body.get("tags", [])
    if not isinstance(tags, list):
        raise ValueError("tags")
    kept = [t for t in tags if not (isinstance(t, dict) and t.get("key") in (USER_TAG, JOB_TAG))]
    return {
        **body,
        "user_id": user,
        "tags": [*kept, {"key": USER_TAG, "value": user}, {"key": JOB_TAG, "value": job.id}],
    }
