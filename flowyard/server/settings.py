"""What a server process needs to know, passed to uvicorn's workers through one variable."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from flowyard import defaults
from flowyard.runner.settings import seconds

ENV_SETTINGS = "FLOWYARD_SERVER_SETTINGS"
# Listening on these, a server is reached by its host's name, not by the address it listens on.
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# The dispatcher's tunables, each a variable of the `flowyard server` command's environment.
TUNABLES = {
    "dispatch_interval_s": ("FLOWYARD_DISPATCH_INTERVAL_S", defaults.DISPATCH_INTERVAL_S),
    "reconcile_interval_s": ("FLOWYARD_RECONCILE_INTERVAL_S", defaults.RECONCILE_INTERVAL_S),
    "heartbeat_timeout_s": ("FLOWYARD_HEARTBEAT_TIMEOUT_S", defaults.HEARTBEAT_TIMEOUT_S),
    "health_interval_s": ("FLOWYARD_HEALTH_INTERVAL_S", defaults.HEALTH_INTERVAL_S),
    "repair_after_s": ("FLOWYARD_REPAIR_AFTER_S", defaults.REPAIR_AFTER_S),
    "gc_interval_s": ("FLOWYARD_GC_INTERVAL_S", defaults.GC_INTERVAL_S),
    "gc_grace_s": ("FLOWYARD_GC_GRACE_S", defaults.GC_GRACE_S),
    "sweep_lease_s": ("FLOWYARD_SWEEP_LEASE_S", defaults.SWEEP_LEASE_S),
}


@dataclass(frozen=True)
class ServerSettings:
    """Where the workspace keeps its data, and how it is served.

    Attributes:
        workspace_name: Shown by the info endpoint and the studio.
        db_url: SQLAlchemy URL of the one database (MLflow's tables and Flowyard's).
        artifacts_destination: Where MLflow's artifact proxy stores files: a folder or any URI
            MLflow's artifact repositories accept (``s3://``, ``gs://``, ...).
        auth: Whether every request must carry a token (see ``flowyard.server.auth``).
        insecure: Serve without auth on an address other than loopback anyway.
        secret_key_file: The workspace's secret key (signs job tokens and studio sessions,
            encrypts secret ENV_VARS), created on first start; ``$FLOWYARD_SECRET_KEY`` overrides.
        max_body_mb: Bound on a request body other than a blob, a log append or an MLflow
            artifact upload, in MB (10**6 bytes).
        max_blob_mb: Bound on one snapshot blob upload, in MB.
        max_log_append_kib: Bound on one log append, in KiB (1024 bytes).
        dispatch_interval_s: The dispatcher's tick when no submit wakes it.
        reconcile_interval_s: Between two passes of the reconciler over the active jobs.
        heartbeat_timeout_s: A runner silent this long is lost.
        health_interval_s: Between two background health checks of each compute.
        advertised_url: The workspace's URL as runners reach it when their compute names none:
            a load balancer's in front of several replicas; default: this server's own.
        replica_url: This replica's URL as runners on other hosts reach it (recorded for their
            fallback); default: this server's own, with the host's name when it listens on every
            address (0.0.0.0 or ::), which no other host can reach.
        repair_after_s: A submission or a job's end left half-done this long (a server killed
            mid-request) is settled by the reconciler: a run without its job is ended and
            deleted, a final job's open run is ended.
        gc_interval_s: Between two garbage collections in the background.
        gc_grace_s: How long an unreferenced snapshot or blob is kept after its last use (a
            submission in flight relies on it).
        blob_cache_mb: The bound this host's blob cache is pruned back to, in MB.
        env_cache_mb: The bound this host's job environments are pruned back to, in MB.
        max_log_mb: A job's log is cut here (the cut marked in the log), in MB.
        disk_warn_percent: Health warns when the disk of the database or the artifact store
            is fuller than this.
        sweep_lease_s: How long a server process's sweep controller keeps a sweep after its
            last tick before another process may take it over.
    """

    workspace_name: str
    db_url: str
    artifacts_destination: str
    host: str = defaults.DEFAULT_HOST
    port: int = defaults.DEFAULT_PORT
    workers: int = 1
    auth: bool = True
    insecure: bool = False
    secret_key_file: str = ""
    max_body_mb: float = defaults.MAX_BODY_MB
    max_blob_mb: float = defaults.SNAPSHOT_BLOB_MAX_MB
    max_log_append_kib: int = defaults.MAX_LOG_APPEND_KIB
    dispatch_interval_s: float = defaults.DISPATCH_INTERVAL_S
    reconcile_interval_s: float = defaults.RECONCILE_INTERVAL_S
    heartbeat_timeout_s: float = defaults.HEARTBEAT_TIMEOUT_S
    health_interval_s: float = defaults.HEALTH_INTERVAL_S
    advertised_url: str = ""
    replica_url: str = ""
    repair_after_s: float = defaults.REPAIR_AFTER_S
    gc_interval_s: float = defaults.GC_INTERVAL_S
    gc_grace_s: float = defaults.GC_GRACE_S
    blob_cache_mb: float = defaults.BLOB_CACHE_MB
    env_cache_mb: float = defaults.ENV_CACHE_MB
    max_log_mb: float = defaults.MAX_LOG_MB
    disk_warn_percent: float = defaults.DISK_WARN_PERCENT
    sweep_lease_s: float = defaults.SWEEP_LEASE_S

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> ServerSettings:
        raw = os.environ.get(ENV_SETTINGS)
        if not raw:
            raise RuntimeError(
                f"{ENV_SETTINGS} is not set; start the server with `flowyard server`."
            )
        return cls(**json.loads(raw))

    @staticmethod
    def tunables(environ: Mapping[str, str]) -> dict[str, Any]:
        """The dispatcher's fields set in ``environ`` (``$FLOWYARD_*_S``), read once by the
        command that starts the server; unset ones keep their defaults."""
        return {
            field: seconds(environ, name, default) for field, (name, default) in TUNABLES.items()
        }

    @property
    def url(self) -> str:
        """This server's own URL, as this host reaches it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def reachable_url(self) -> str:
        """This replica's URL as other hosts reach it."""
        if self.replica_url:
            return self.replica_url.rstrip("/")
        if self.host in WILDCARD_HOSTS:
            return f"http://{socket.getfqdn()}:{self.port}"
        return self.url

    @property
    def runners_url(self) -> str:
        """The URL runners are given first: the advertised one, else this server's own."""
        return (self.advertised_url or self.url).rstrip("/")
