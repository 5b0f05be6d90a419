"""Defaults, each with the reason it has its value."""

from pathlib import Path

# Flowyard's own API lives under one prefix beside MLflow's `/api/2.0/mlflow/...`, so the two never
# collide and a proxy can route both with one rule.
API_PREFIX = "/api/flowyard/v1"

# Where user code finds its workspace, as Azure ML kept `.azureml/config.json`.
CONFIG_DIR = ".flowyard"
CONFIG_FILE = "config.json"

# Inside a workspace folder: the file that marks it, the SQLite database and the artifact root.
WORKSPACE_FILE = "workspace.json"
SQLITE_FILE = "flowyard.db"
ARTIFACTS_DIR = "artifacts"

DEFAULT_WORKSPACE_NAME = "default"
# A user-level home for workspaces keeps databases out of project folders, whose code gets snapshot.
WORKSPACES_HOME = Path.home() / ".flowyard" / "workspaces"

# 127.0.0.1 and not 0.0.0.0: a workspace is private until someone chooses to expose it.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5000

# The info call that recognises a workspace must fail fast when nothing answers.
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
# How long the client keeps repeating a safe request (a read, a blob's upload) to a workspace
# that answered before and is now away or unavailable: a restart or a failover, not an outage.
CLIENT_RETRY_FOR_S = 120.0
# What a 503 asks a client to wait before asking again: a database failing over or restarting
# is usually back within seconds, and clients back off further on their own.
RETRY_AFTER_S = 2
# A follower's read of a job's log waits this long on the workspace for news (more log, another
# status, the end) before it answers: the follower hears of the end at once, and asks rarely.
LOG_WAIT_S = 10.0

# Snapshots, as on Azure ML: a project past 300 MB or 2,000 files is almost always data or an
# environment caught by mistake, which the job should read from elsewhere.
SNAPSHOT_MAX_MB = 300.0
SNAPSHOT_MAX_FILES = 2000
# Never code: VCS data, caches, environments, MLflow's local store, the job's own outputs and
# Flowyard's config. Gitignore syntax; a leading "/" anchors a pattern at the project root.
SNAPSHOT_DEFAULT_EXCLUDES = (
    ".git/",
    "__pycache__/",
    ".venv/",
    "/mlruns/",
    "/outputs/",
    "/.flowyard/",
)
# The first of these found in a folder applies to it and everything below it.
SNAPSHOT_IGNORE_FILES = (".flowyardignore", ".amlignore", ".gitignore")
# Blob uploads are few and concurrent; more workers only queue on the server's disk.
SNAPSHOT_UPLOAD_WORKERS = 8
# Small blobs travel many to a request: one request per file spent most of a cold upload on
# per-request work (middlewares, a database commit). A batch stays well below the server's
# MAX_BODY_MB, which bounds it; a file over SNAPSHOT_BATCH_FILE_BYTES goes alone, streamed. The
# server's work per file (creating it) outweighs its work per byte for small files, so a batch
# also holds at most SNAPSHOT_BATCH_FILES, which spreads many tiny files over the workers.
SNAPSHOT_BATCH_BYTES = 4_000_000
SNAPSHOT_BATCH_FILE_BYTES = 1_000_000
SNAPSHOT_BATCH_FILES = 256
# The server's bound on a batch's count, so a body of empty blobs cannot ask for a million rows.
SNAPSHOT_BATCH_MAX_BLOBS = 2000
# One blob may be a big file that a slow artifact store takes minutes to accept.
SNAPSHOT_BLOB_TIMEOUT_S = 600.0
# The server's guard on one blob's body. It is streamed to disk, so the bound protects the disk,
# not memory; it stays above SNAPSHOT_MAX_MB so that raising the client limit somewhat still works.
SNAPSHOT_BLOB_MAX_MB = 1024.0
# A snapshot path's bounds: a part longer than 255 bytes cannot be a file name on Linux, macOS or
# Windows, and a deep path past 1,024 bytes would leave little room under a runner's job folder
# within PATH_MAX.
SNAPSHOT_MAX_NAME_BYTES = 255
SNAPSHOT_MAX_PATH_BYTES = 1024

# The server's bound on any other request body (Flowyard's JSON and MLflow's tracking API; MLflow's
# artifact uploads stream to the store and are not bounded here). MLflow's biggest legitimate
# bodies (log_batch with 1,000 metrics, a trace) are far below it; the server holds a body in
# memory while it parses it, so the bound protects memory.
MAX_BODY_MB = 16.0
# The server's bound on one log append. The runner sends pieces of 256 KiB at most
# (runner/logship.py), so this is 4 times that, and may not be set below it.
MAX_LOG_APPEND_KIB = 1024
MIN_LOG_APPEND_KIB = 256

# The dispatcher's tick: a queued job waits at most this long for its claim when no request woke
# the dispatcher (a submit does), so it is short, and the claim is one indexed query.
DISPATCH_INTERVAL_S = 0.5
# The reconciler asks each compute about each active job: a network call per job on Ray, so it
# runs ten times less often than the dispatcher.
RECONCILE_INTERVAL_S = 5.0
# A runner beats every HEARTBEAT_S; a minute of silence is many missed beats, and long enough for
# a workspace restart or a short network outage not to fail a healthy job.
HEARTBEAT_TIMEOUT_S = 60.0
# A server process's sweep controller holds a sweep this long past its last tick; a process that
# dies (or hangs) leaves the sweep to another process, or to itself restarted, after that.
SWEEP_LEASE_S = 15.0
# Each compute's health is checked in the background this often, never inside a request (a Ray
# check is a network round trip to the dashboard, which may hang).
HEALTH_INTERVAL_S = 30.0
# A submission or a job's end left half-done this long is settled by the reconciler: well past
# the longest a request takes (REQUEST_TIMEOUT_S), so it never races one in flight.
REPAIR_AFTER_S = 120.0
# `GET /computes/NAME?health=true` waits this long at most for a fresh check, then answers with
# the last one: a request never waits on a compute that hangs.
HEALTH_WAIT_S = 2.0

# The runner's heartbeat: one small request a second per job is nothing to the workspace, and a
# cancel reaches the job within a second.
RUNNER_HEARTBEAT_S = 1.0
# After SIGTERM, how long the entry point may take to stop before SIGKILL: enough to flush files
# and log a last metric.
RUNNER_KILL_GRACE_S = 10.0
# A workspace away for longer than this fails the job's calls for good: ten minutes covers a
# server restart or upgrade, not an outage nobody is fixing.
RUNNER_RETRY_FOR_S = 600.0

# The server collects garbage (unreferenced snapshots and blobs, ended jobs' folders, its host's
# blob cache) this often: often enough that a busy workspace's leftovers never pile up for long.
GC_INTERVAL_S = 3600.0
# What a submission in flight relies on (a blob it was told is stored, a snapshot it created) is
# kept this long after its last use, referenced or not: far beyond any one submission's steps.
GC_GRACE_S = 3600.0
# A runner host's blob cache is pruned back to this, the blobs used longest ago first.
BLOB_CACHE_MB = 5000.0
# The bound a host's cached job environments are pruned back to (least recently used first).
ENV_CACHE_MB = 20000.0
# A cached environment no job used for this long is removed by the next pruning.
ENV_UNUSED_DAYS = 30.0
# A job's log stops growing here (marked where cut): a runaway print loop must not fill the
# database, whose log chunks every replica reads.
MAX_LOG_MB = 1000.0
# The server's health warns once the disk of its database or artifact store is fuller than this.
DISK_WARN_PERCENT = 90.0
