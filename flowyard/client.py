"""HTTP client for Flowyard's own API (MLflow's API is reached through MLflow's client)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.request import getproxies

import httpx

from flowyard import defaults
from flowyard.credentials import find_token
from flowyard.errors import (
    FlowyardError,
    NotAWorkspaceError,
    WorkspaceUnavailableError,
    WorkspaceUnreachableError,
    error_from_payload,
)
from flowyard.retries import IDEMPOTENT_METHODS, retrying, transient
from flowyard.status import JobStatus

if TYPE_CHECKING:
    from flowyard.schemas import (
        BlobInfo,
        ComputeOut,
        ComputeType,
        DeletedOut,
        GcOut,
        JobOut,
        JobSubmit,
        RetentionOut,
        RoleName,
        SnapshotDetail,
        SnapshotInfo,
        StatusUpdate,
        SweepOut,
        SweepSubmit,
        TokenCreated,
        TokenOut,
        UserOut,
        Whoami,
    )
    from flowyard.snapshot.manifest import FileEntry

# The API's models (pydantic) are imported where used: the runner, on every job's critical path,
# makes its calls (claim, log, heartbeat, status) in plain JSON through `request` and does
# without them (flowyard.runner.api).


_CHUNK = 1 << 20


def _blob_timeout() -> httpx.Timeout:
    # One blob may be a big file that a slow artifact store takes minutes to accept.
    return httpx.Timeout(defaults.SNAPSHOT_BLOB_TIMEOUT_S, connect=defaults.CONNECT_TIMEOUT_S)


def _tls_context(url: str) -> ssl.SSLContext | bool:
    """Loading the system's CA certificates takes tens of milliseconds, and every Client (so every
    runner, before its job starts) would pay for them. A plain-HTTP workspace reached with no
    proxy never speaks TLS: it gets a context that holds no certificates, and so would refuse
    any TLS peer (it verifies nothing less)."""
    if url.startswith("http://") and not getproxies():
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    return True


class Client:
    """A connection to one workspace server.

    Args:
        url: The workspace's base URL, e.g. ``http://127.0.0.1:5000``.
        token: The bearer token to send; default: the one :func:`~flowyard.credentials.find_token`
            finds for ``url``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = defaults.REQUEST_TIMEOUT_S,
        retry_for_s: float = defaults.CLIENT_RETRY_FOR_S,
    ) -> None:
        self.url = url.rstrip("/")
        self.retry_for_s = retry_for_s
        # Connection errors are retried only once the workspace has answered: one that never
        # did is most likely not started, which the user should hear at once.
        self._answered = False
        self.token = token or find_token(self.url)
        self._http = httpx.Client(
            base_url=self.url + defaults.API_PREFIX,
            timeout=httpx.Timeout(timeout, connect=defaults.CONNECT_TIMEOUT_S),
            headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
            verify=_tls_context(self.url),
        )

    @property
    def http(self) -> httpx.Client:
        """The underlying HTTP client, based at the API prefix, for calls that move raw bytes."""
        return self._http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> dict[str, Any]:
        """The workspace's name, version and capabilities; raises if the URL is not a workspace."""
        body = self.request("GET", "/info")
        if not isinstance(body, dict) or body.get("service") != "flowyard":
            raise NotAWorkspaceError(self._not_a_workspace())
        return body

    def health(self) -> dict[str, Any]:
        body = self.request("GET", "/health")
        assert isinstance(body, dict)
        return body

    def submit_job(self, body: JobSubmit) -> JobOut:
        """Create a job. The request carries a submission key (made here unless ``body`` has
        one), so it is retried like a GET while the workspace is away: a second try of a
        submission whose answer was lost gets the same job back, never a second one."""
        from flowyard.schemas import JobOut

        if body.submission_key is None:
            body = body.model_copy(update={"submission_key": uuid.uuid4().hex})
        return JobOut.model_validate(
            self.request("POST", "/jobs", json=body.model_dump(mode="json"), idempotent=True)
        )

    def submit_sweep(self, body: SweepSubmit) -> JobOut:
        """Create a sweep; the answer is its job (the trials' parent)."""
        from flowyard.schemas import JobOut

        return JobOut.model_validate(
            self.request("POST", "/sweeps", json=body.model_dump(mode="json"))
        )

    def get_sweep(self, sweep_id: str) -> SweepOut:
        from flowyard.schemas import SweepOut

        return SweepOut.model_validate(self.request("GET", f"/sweeps/{sweep_id}"))

    def get_job(self, job_id: str) -> JobOut:
        from flowyard.schemas import JobOut

        return JobOut.model_validate(self.request("GET", f"/jobs/{job_id}"))

    def list_jobs(self, **filters: Any) -> list[JobOut]:
        from flowyard.schemas import JobList

        params = {k: v for k, v in filters.items() if v is not None}
        return JobList.model_validate(self.request("GET", "/jobs", params=params)).jobs

    def cancel_job(self, job_id: str) -> JobOut:
        from flowyard.schemas import JobOut

        return JobOut.model_validate(self.request("POST", f"/jobs/{job_id}/cancel"))

    def delete_job(self, job_id: str) -> DeletedOut:
        """Delete an ended job for good: its run, artifacts, log and events."""
        from flowyard.schemas import DeletedOut

        return DeletedOut.model_validate(self.request("DELETE", f"/jobs/{job_id}"))

    def delete_jobs(
        self,
        *,
        status: JobStatus | None = None,
        experiment_id: str | None = None,
        compute: str | None = None,
        user: str | None = None,
        ended_before: datetime | None = None,
    ) -> DeletedOut:
        """Delete every ended job the filter (at least one field) matches; the answer names
        the matching jobs left because they have not ended."""
        from flowyard.schemas import DeletedOut

        params = _given(
            status=status,
            experiment_id=experiment_id,
            compute=compute,
            user=user,
            ended_before=ended_before.isoformat() if ended_before else None,
        )
        return DeletedOut.model_validate(self.request("DELETE", "/jobs", params=params))

    def delete_experiment(self, experiment_id: str) -> DeletedOut:
        """Delete an experiment for good, with its jobs, runs and artifacts."""
        from flowyard.schemas import DeletedOut

        return DeletedOut.model_validate(self.request("DELETE", f"/experiments/{experiment_id}"))

    def gc(self, *, dry_run: bool = False) -> GcOut:
        """Collect the workspace's garbage now: unreferenced snapshots and blobs, the folders of
        ended jobs on the server's host and its blob cache past its bound; a dry run only
        counts them."""
        from flowyard.schemas import GcOut

        params = {"dry_run": "true"} if dry_run else None
        return GcOut.model_validate(self.request("POST", "/gc", params=params))

    def retention(self) -> RetentionOut:
        """The workspace's retention policy and each experiment's own."""
        from flowyard.schemas import RetentionOut

        return RetentionOut.model_validate(self.request("GET", "/retention"))

    def set_retention(
        self,
        *,
        keep_days: float | None = None,
        keep_last: int | None = None,
        experiment_id: str | None = None,
    ) -> RetentionOut:
        """Set the workspace's retention policy, or an experiment's own (replacing the whole
        policy: a rule not given keeps nothing)."""
        from flowyard.schemas import RetentionOut

        path = f"/retention/experiments/{experiment_id}" if experiment_id else "/retention"
        body = {"keep_days": keep_days, "keep_last": keep_last}
        return RetentionOut.model_validate(self.request("PUT", path, json=body))

    def clear_retention(self, experiment_id: str) -> RetentionOut:
        """The experiment follows the workspace's policy again."""
        from flowyard.schemas import RetentionOut

        return RetentionOut.model_validate(
            self.request("DELETE", f"/retention/experiments/{experiment_id}")
        )

    def update_status(self, job_id: str, update: StatusUpdate) -> JobOut:
        from flowyard.schemas import JobOut

        return JobOut.model_validate(
            self.request("POST", f"/jobs/{job_id}/status", json=update.model_dump(mode="json"))
        )

    def read_log(
        self, job_id: str, offset: int = 0, *, wait: float = 0
    ) -> tuple[bytes, JobStatus, int]:
        """A page of log bytes from ``offset`` (the next page starts where it ends), with the
        job's status and the log's full size: read on while the offset is short of the size.
        With ``wait``, a read that finds nothing new waits up to that many seconds for more log,
        a change of status or the job's end."""
        params = {"offset": offset, **({"wait": wait} if wait else {})}
        response = self.request("GET", f"/jobs/{job_id}/logs", params=params, raw=True)
        return (
            response.content,
            JobStatus(response.headers["X-Flowyard-Job-Status"]),
            int(response.headers["X-Flowyard-Log-Size"]),
        )

    def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        """Which of these blobs the workspace lacks, in the order asked."""
        from flowyard.schemas import Digests, Missing

        body = Digests(digests=list(digests)).model_dump(mode="json")
        # A question, not a change: asked again, it gets the same answer.
        return Missing.model_validate(
            self.request("POST", "/blobs/missing", json=body, idempotent=True)
        ).missing

    def put_blob(self, digest: str, content: Iterable[bytes]) -> BlobInfo:
        """Store one blob, its content streamed from ``content`` (the server checks its sha256)."""
        from flowyard.schemas import BlobInfo

        return BlobInfo.model_validate(
            self.request("PUT", f"/blobs/{digest}", content=content, timeout=_blob_timeout())
        )

    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> list[BlobInfo]:
        """Store many small ``(digest, content)`` blobs in one request, all or none."""
        from flowyard.schemas import BlobBatchOut
        from flowyard.snapshot import batch

        body = self.request(
            "POST",
            "/blobs/batch",
            content=b"".join(batch.encode(blobs)),
            headers={"Content-Type": batch.MEDIA_TYPE},
            timeout=_blob_timeout(),
            idempotent=True,  # blobs are stored by their content: a second store is a no-op
        )
        return BlobBatchOut.model_validate(body).blobs

    def read_blob(self, digest: str) -> Iterator[bytes]:
        """A blob's content, streamed in chunks; a failed transfer raises
        WorkspaceUnreachableError, even midway."""
        try:
            with self._http.stream("GET", f"/blobs/{digest}", timeout=_blob_timeout()) as r:
                if not r.is_success:
                    r.read()
                    self._raise_for(r)
                yield from r.iter_bytes(_CHUNK)
        except httpx.TransportError as e:
            raise WorkspaceUnreachableError(
                f"Reading blob {digest} from the workspace at {self.url} failed ({e}); check that "
                "the server is running and reachable."
            ) from e

    def create_snapshot(self, files: Sequence[FileEntry]) -> SnapshotInfo:
        """Record a manifest whose blobs are all stored; the same files give the same id."""
        from flowyard.schemas import SnapshotCreate, SnapshotFile, SnapshotInfo

        body = SnapshotCreate(files=[SnapshotFile(**f.to_json()) for f in files])
        return SnapshotInfo.model_validate(
            # Named by its manifest: recorded again, the same snapshot.
            self.request("POST", "/snapshots", json=body.model_dump(mode="json"), idempotent=True)
        )

    def get_snapshot(self, snapshot_id: str) -> SnapshotDetail:
        from flowyard.schemas import SnapshotDetail

        return SnapshotDetail.model_validate(self.request("GET", f"/snapshots/{snapshot_id}"))

    def snapshot_files(self, snapshot_id: str) -> list[FileEntry]:
        """A snapshot's files, read without the API's models: what a runner fetches before each
        job, which pydantic's import would hold up (as :mod:`flowyard.runner.api` explains)."""
        from flowyard.snapshot.manifest import FileEntry

        body = self.request("GET", f"/snapshots/{snapshot_id}")
        return [FileEntry.from_json(f) for f in body["files"]]

    def list_computes(self) -> list[ComputeOut]:
        """Every compute, ``local`` first."""
        from flowyard.schemas import ComputeList

        return ComputeList.model_validate(self.request("GET", "/computes")).computes

    def get_compute(self, name: str, *, health: bool = False) -> ComputeOut:
        """The compute with its last health check; ``health`` asks the server for a new one and
        waits for it briefly."""
        from flowyard.schemas import ComputeOut

        params = {"health": "true"} if health else None
        return ComputeOut.model_validate(self.request("GET", f"/computes/{name}", params=params))

    def create_compute(
        self,
        name: str,
        type: ComputeType,
        *,
        address: str | None = None,
        max_concurrent_jobs: int | None = None,
        workspace_url: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> ComputeOut:
        """Register a compute; what is not given takes the server's default."""
        from flowyard.schemas import ComputeOut

        body = _given(
            name=name,
            type=type,
            address=address,
            max_concurrent_jobs=max_concurrent_jobs,
            workspace_url=workspace_url,
            settings=settings,
        )
        return ComputeOut.model_validate(self.request("POST", "/computes", json=body))

    def update_compute(
        self,
        name: str,
        *,
        address: str | None = None,
        max_concurrent_jobs: int | None = None,
        workspace_url: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> ComputeOut:
        """Change what is given of a compute's settings (``settings`` replaces them whole)."""
        from flowyard.schemas import ComputeOut

        body = _given(
            address=address,
            max_concurrent_jobs=max_concurrent_jobs,
            workspace_url=workspace_url,
            settings=settings,
        )
        return ComputeOut.model_validate(self.request("PATCH", f"/computes/{name}", json=body))

    def delete_compute(self, name: str) -> None:
        self.request("DELETE", f"/computes/{name}", raw=True)

    def whoami(self) -> Whoami:
        """Who the workspace takes this client's token for."""
        from flowyard.schemas import Whoami

        return Whoami.model_validate(self.request("GET", "/whoami"))

    def create_user(self, name: str) -> UserOut:
        from flowyard.schemas import UserOut

        return UserOut.model_validate(self.request("POST", "/users", json={"name": name}))

    def list_users(self) -> list[UserOut]:
        from flowyard.schemas import UserList

        return UserList.model_validate(self.request("GET", "/users")).users

    def delete_user(self, name: str) -> None:
        """Delete a user and revoke every token they hold (their jobs and runs stay)."""
        self.request("DELETE", f"/users/{name}")

    def create_token(
        self,
        role: RoleName,
        *,
        user: str | None = None,
        expires_at: datetime | None = None,
        description: str = "",
    ) -> TokenCreated:
        """A new token (for ``user``, default: this client's own); the answer holds the token
        itself, shown only this once."""
        from flowyard.schemas import TokenCreated

        body = _given(
            role=role,
            user=user,
            expires_at=expires_at.isoformat() if expires_at else None,
            description=description,
        )
        return TokenCreated.model_validate(self.request("POST", "/tokens", json=body))

    def list_tokens(self, user: str | None = None) -> list[TokenOut]:
        from flowyard.schemas import TokenList

        params = {"user": user} if user else None
        return TokenList.model_validate(self.request("GET", "/tokens", params=params)).tokens

    def revoke_token(self, token_id: str) -> TokenOut:
        from flowyard.schemas import TokenOut

        return TokenOut.model_validate(self.request("DELETE", f"/tokens/{token_id}"))

    def request(
        self, method: str, path: str, *, raw: bool = False, idempotent: bool = False, **kwargs: Any
    ) -> Any:
        """Call the API; returns the JSON body, or the response itself when ``raw``.

        A request that is safe to repeat (see :mod:`flowyard.retries`; ``idempotent`` says so of
        another method's, and a body that can be sent again) is retried with back-off for up to
        ``retry_for_s`` while the workspace is away or unavailable."""
        content = kwargs.get("content")
        if (
            self.retry_for_s <= 0
            or not (idempotent or method in IDEMPOTENT_METHODS)
            or not isinstance(content, bytes | str | None)
        ):
            return self._request_once(method, path, raw=raw, **kwargs)

        def worth_retrying(error: BaseException) -> bool:
            # Unlike a runner's, a user's command does not wait out an unexplained 500: it may
            # be a bug, and the user is waiting.
            if isinstance(error, WorkspaceUnreachableError):
                return self._answered
            return transient(error) and type(error) is not FlowyardError

        for attempt in retrying(self.retry_for_s, worth=worth_retrying):
            with attempt:
                return self._request_once(method, path, raw=raw, **kwargs)
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, *, raw: bool = False, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
            self._answered = True
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise WorkspaceUnreachableError(
                f"The workspace at {self.url} does not answer; start it with `flowyard server` "
                "in your project folder, or fix the URL in .flowyard/config.json."
            ) from e
        except httpx.HTTPError as e:
            raise WorkspaceUnreachableError(
                f"The request to the workspace at {self.url} failed ({e}); check that the server "
                "is running and reachable."
            ) from e
        if raw and response.is_success:
            return response
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.is_success and body is not None:
            return body
        self._raise_for(response, body)

    def _raise_for(self, response: httpx.Response, body: Any = None) -> NoReturn:
        if body is None:
            try:
                body = response.json()
            except ValueError:
                body = None
        if isinstance(body, dict) and "error_code" in body and "message" in body:
            raise error_from_payload(body)
        if response.status_code in (502, 503, 504):
            # A proxy or load balancer in front of a workspace that is away or restarting.
            raise WorkspaceUnavailableError(
                f"The workspace at {self.url} is unavailable for now ({response.status_code}); "
                "try again in a moment, and check the server if it persists."
            )
        if response.status_code in (404, 405) or (body is None and response.status_code < 500):
            raise NotAWorkspaceError(self._not_a_workspace())
        request = response.request
        raise FlowyardError(
            f"The workspace at {self.url} answered {response.status_code} to {request.method} "
            f"{request.url.path.removeprefix(defaults.API_PREFIX)}."
        )

    def _not_a_workspace(self) -> str:
        return (
            f"{self.url} answers but is not a Flowyard workspace; point the URL at a server "
            "started with `flowyard server`."
        )


def _given(**fields: Any) -> dict[str, Any]:
    """The fields given, for a body whose absent fields take the server's defaults."""
    return {k: v for k, v in fields.items() if v is not None}
