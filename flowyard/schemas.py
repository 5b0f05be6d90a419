"""The API's shapes, shared by the server and the client (pydantic models)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowyard.jobspec import EnvironmentSpec, JobOptions
from flowyard.status import JobStatus as JobStatus  # noqa: PLC0414 (re-exported for the API)

# What the database's integer columns hold (PostgreSQL's INTEGER is 32 bits); a bigger number
# is refused with a 422 instead of failing in the database.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
# A submission key: what a client makes up once per submission (a UUID's hex fits).
SUBMISSION_KEY_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobSubmit(_Model):
    """What the MLflow plugin sends to create a job (and its MLflow run)."""

    experiment_id: str
    snapshot_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    project_uri: str
    entry_point: str
    parameters: dict[str, str] = {}
    environment: EnvironmentSpec = EnvironmentSpec()
    options: JobOptions = JobOptions()
    compute: str = "local"
    priority: int = Field(default=0, ge=INT32_MIN, le=INT32_MAX)
    # MAX_RETRIES; None: the compute's default.
    max_retries: int | None = Field(default=None, ge=0, le=INT32_MAX)
    run_name: str | None = None
    user: str
    tags: dict[str, str] = {}
    # ENV_VARS marked secret: stored encrypted, handed only to the job's own runner.
    secret_env: dict[str, str] = {}
    # Makes the submission safe to send again: the same key from the same user returns the job
    # the first request made (see flowyard.client.Client.submit_job).
    submission_key: str | None = Field(default=None, pattern=SUBMISSION_KEY_PATTERN)


class SweepSubmit(_Model):
    """A sweep: the job every trial is made from (its parameters are the ones all trials share)
    and the spec (:class:`flowyard.sweepspec.SweepSpec`'s form), checked by the workspace."""

    job: JobSubmit
    spec: dict[str, Any]


class ErrorInfo(_Model):
    """Why a job failed, as the runner parsed it from the process and its log."""

    type: str | None = None
    message: str | None = None
    traceback: str | None = None
    exit_code: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    signal: str | None = None


class JobEventOut(_Model):
    at: datetime
    from_status: JobStatus | None
    to_status: JobStatus
    reason: str


class JobOut(_Model):
    id: str
    run_id: str
    experiment_id: str
    snapshot_id: str
    project_uri: str
    entry_point: str
    parameters: dict[str, str]
    environment: EnvironmentSpec
    options: JobOptions
    compute: str
    status: JobStatus
    priority: int
    max_retries: int | None
    # Where the runner uploads ./outputs: the run's artifact root.
    artifact_uri: str | None
    # The names of its secret ENV_VARS (their values are never shown).
    secret_env_names: list[str] = []
    cancel_requested: bool
    user: str
    attempt: int
    submitted_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    heartbeat_at: datetime | None
    exit_code: int | None
    error: ErrorInfo | None
    log_size: int
    waiting_reason: str | None = None
    external_id: str | None = None
    # "run", or "sweep" for a sweep (its trials are runs with their sweep and trial number).
    kind: str = "run"
    sweep_id: str | None = None
    trial_number: int | None = None
    events: list[JobEventOut] = []
    # Only in the answer to a submission that runs on the submitter's machine (compute "local"):
    # the token its runner uses, valid for this job only and until it ends.
    runner_token: str | None = None
    # Only in the answer to the job's own runner starting it: its secret ENV_VARS.
    secret_env: dict[str, str] | None = None
    # Only in the answer to a re-run by another user than the first submitter: the names of the
    # secret ENV_VARS it runs without (they stay with their submitter; a re-run may send its own).
    secret_env_dropped: list[str] | None = None


class JobList(_Model):
    jobs: list[JobOut]


class DeletedOut(_Model):
    """What a deletion removed for good, and the jobs it left because they have not ended."""

    job_ids: list[str]
    runs: int
    artifact_files: int
    artifact_bytes: int
    log_bytes: int
    left_active: list[str] = []


class RetentionPolicy(_Model):
    """How long ended jobs are kept: a job goes once neither rule keeps it (and one is set).
    Jobs whose run is tagged ``flowyard.keep=true`` and the source runs of registered model
    versions are always kept."""

    keep_days: float | None = Field(None, gt=0, description="Keep jobs that ended this recently.")
    keep_last: int | None = Field(None, ge=0, description="Keep the newest N ended jobs.")


class RetentionOut(_Model):
    """The workspace's policy, and each experiment's own where one is set (it replaces the
    workspace's for that experiment)."""

    workspace: RetentionPolicy
    experiments: dict[str, RetentionPolicy] = {}


class GcOut(_Model):
    """What a garbage collection freed (or, on a dry run, would free): each kind's count and
    bytes."""

    dry_run: bool
    expired_jobs: int
    expired_bytes: int
    snapshots: int
    blobs: int
    blob_bytes: int
    job_folders: int
    job_folder_bytes: int
    cache_blobs: int
    cache_bytes: int
    environments: int = 0
    environment_bytes: int = 0
    # docker_env jobs' images (their bytes are the engine's, shared between layers: not counted).
    job_images: int = 0


class TrialOut(_Model):
    """One trial of a sweep: its job, and what Optuna holds of it."""

    number: int
    run_id: str
    status: JobStatus
    parameters: dict[str, str]
    # The objective: its final value, or a stopped trial's last reported one.
    value: float | None = None
    # Optuna's word for it: running, complete, pruned or fail.
    state: str
    last_step: int | None = None
    # Why its job is where it is (its last event's reason).
    reason: str | None = None
    submitted_at: datetime
    ended_at: datetime | None = None


class SweepOut(_Model):
    job: JobOut
    spec: dict[str, Any]
    # Best first (by the objective's goal), then trials without a value, by number.
    trials: list[TrialOut]
    best_trial_id: str | None = None
    best_value: float | None = None


class RunnerStart(_Model):
    host: str
    pid: int = Field(ge=0, le=INT32_MAX)
    # Chosen by the runner: a sandboxed runner's pid is its namespace's (the same small number
    # for every runner on a host), so host and pid alone cannot tell two runners apart.
    instance: str = Field(default="", max_length=64)


class StatusUpdate(_Model):
    status: JobStatus
    reason: str = ""
    exit_code: int | None = Field(default=None, ge=INT32_MIN, le=INT32_MAX)
    error: ErrorInfo | None = None


class Heartbeat(_Model):
    status: JobStatus
    cancel_requested: bool


class LogAppended(_Model):
    size: int


NAME_PATTERN = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"


class ComputeType(StrEnum):
    """What runs a compute's jobs: the submitting machine (``local``, which every workspace has),
    the workspace's host (``process``) or a Ray cluster (``ray``)."""

    LOCAL = "local"
    PROCESS = "process"
    RAY = "ray"


REGISTERED_TYPES = (ComputeType.PROCESS, ComputeType.RAY)
"""The types a compute may be created with (``local`` is built in)."""


class ComputeCreate(_Model):
    name: str = Field(pattern=NAME_PATTERN)
    type: Literal[ComputeType.PROCESS, ComputeType.RAY]
    address: str | None = None
    max_concurrent_jobs: int = Field(default=2, ge=1, le=10_000)
    workspace_url: str | None = None
    # {"resources": {"num_cpus": 1, "num_gpus": 0, "memory": 0}, "max_retries": 0,
    #  "python": "python", "isolation": "sandbox", "container_engine": "podman",
    #  "container_volumes": ["/data"], "isolation_image": "debian:12" (isolation "container")}
    settings: dict[str, Any] = {}


class ComputeUpdate(_Model):
    address: str | None = None
    max_concurrent_jobs: int | None = Field(default=None, ge=1, le=10_000)
    workspace_url: str | None = None
    settings: dict[str, Any] | None = None


class ComputeOut(_Model):
    name: str
    type: ComputeType
    address: str | None
    max_concurrent_jobs: int
    workspace_url: str | None
    settings: dict[str, Any]
    # What a job there is kept from (the workspace's files, other jobs, the server's environment).
    isolation: str = ""
    active_jobs: int = 0
    queued_jobs: int = 0
    healthy: bool | None = None
    health: str | None = None
    # When the server's background check found ``healthy`` and ``health`` (None: not yet).
    health_checked_at: datetime | None = None
    resources: dict[str, Any] = {}
    # Whether the compute runs docker_env jobs, and with what engine and volumes.
    containers: str | None = None


class ComputeList(_Model):
    computes: list[ComputeOut]


class RoleName(StrEnum):
    """A token's role as the API names it; the server ranks them
    (``flowyard.server.auth.tokens.Role``)."""

    READER = "reader"
    CONTRIBUTOR = "contributor"
    OWNER = "owner"


class Whoami(_Model):
    user: str
    role: RoleName
    job: str | None = None
    auth: bool = True


class UserCreate(_Model):
    name: str = Field(pattern=NAME_PATTERN)


class UserOut(_Model):
    name: str
    created_at: datetime


class UserList(_Model):
    users: list[UserOut]


class TokenCreate(_Model):
    role: RoleName
    # Default: the user making the request.
    user: str | None = Field(default=None, pattern=NAME_PATTERN)
    expires_at: datetime | None = None
    description: str = Field(default="", max_length=500)


class TokenOut(_Model):
    id: str
    user: str
    role: RoleName
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    # The token itself: shown once, never stored.
    token: str


class TokenList(_Model):
    tokens: list[TokenOut]


class Digests(_Model):
    digests: list[str]


class Missing(_Model):
    missing: list[str]


class BlobInfo(_Model):
    digest: str
    size: int


class BlobBatchOut(_Model):
    """The blobs of a batch, in the order sent; all of them are stored."""

    blobs: list[BlobInfo]


class SnapshotFile(_Model):
    path: str
    digest: str
    size: int
    executable: bool = False


class SnapshotCreate(_Model):
    files: list[SnapshotFile]


class SnapshotInfo(_Model):
    id: str
    file_count: int
    total_bytes: int


class SnapshotDetail(SnapshotInfo):
    created_at: datetime
    files: list[SnapshotFile]


class ErrorOut(_Model):
    """Every refusal Flowyard makes: what went wrong and how to fix it, in one sentence."""

    error_code: str
    message: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in {
        400: "The request is malformed; the message says what to fix.",
        401: "No token, or one the workspace does not know (unknown, expired or revoked).",
        403: "The token's role or scope does not allow this.",
        404: "What the request names does not exist.",
        409: "The request does not fit the current state of what it names.",
        413: "The body is over one of the server's size limits.",
        422: "A field does not fit its rule; the message names the field, the rule and the fix.",
        503: "The workspace's database is briefly unavailable; retry after Retry-After seconds.",
    }.items()
}
"""The error answers every route of Flowyard's API may give, for its OpenAPI schema."""
