"""The check every request passes before any route — Flowyard's, the studio's or MLflow's — sees it.

A pure ASGI middleware (no per-request task or body copy, except two small bodies a job sends:
a run it creates, rewritten to attribute the run to the job's submitter, and a run it updates,
held RUNNING where it would end a job's run before the job ends). Credentials:
``Authorization: Bearer`` (what ``MLFLOW_TRACKING_TOKEN`` sends), or the studio's signed session
cookie, which unsafe methods may only use with the session's CSRF token or a same-origin
``Origin`` header.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request, cookie_parser
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flowyard.errors import (
    FlowyardError,
    InvalidRequestError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from flowyard.server.auth.policy import (
    SAFE_METHODS,
    STUDIO,
    attribute_run,
    creates_run,
    needed_role,
    runner_call,
)
from flowyard.server.auth.tokens import Keys, Role
from flowyard.server.db.models import Job
from flowyard.server.middleware.body import BodyOverLimit, read_body, replay
from flowyard.server.services import auth as service
from flowyard.server.services import lifecycle
from flowyard.server.services.auth import ANONYMOUS, Principal
from flowyard.status import JobStatus

PRINCIPAL = "flowyard.principal"
CSRF = "flowyard.csrf"  # a studio session's CSRF token, for the pages to send back
SESSION_MAX_AGE_S = 12 * 3600
CSRF_HEADER = "x-csrf-token"
TOKEN_HEADER = "x-flowyard-token"
# A run's creation or update is small JSON (its tags, its status); anything bigger is refused rather
# than held in memory to be rewritten.
MAX_INSPECTED_BODY = 1024 * 1024

_RUN_UPDATE = re.compile(r"^/(?:api|ajax-api)/2\.0/mlflow/runs/update$")

NO_TOKEN = (
    "This workspace needs a token: set FLOWYARD_TOKEN (or MLFLOW_TRACKING_TOKEN), save one with "
    "`flowyard login`, or send `Authorization: Bearer <token>`."
)
BAD_TOKEN = (
    "The token is unknown, expired or revoked (or belongs to a job that has ended); ask a "
    "workspace owner for a new one (`flowyard token create`)."
)


def principal_of(request: Request) -> Principal:
    principal = request.scope.get(PRINCIPAL, ANONYMOUS)
    assert isinstance(principal, Principal)
    return principal


class Sessions:
    """The studio's sign-in cookie: the token's id and a CSRF token, signed with the workspace
    key; valid while the token is (revoking the token ends its sessions).

    Browsers share cookies between the ports of one host, so the cookie is named after the
    server's port: two workspaces on one machine keep their own sign-ins.
    """

    def __init__(self, keys: Keys, port: int) -> None:
        self.cookie = f"flowyard_session_{port}"
        self._serializer = URLSafeTimedSerializer(keys.derive("sessions"), salt="studio-session")

    def issue(self, token_id: str) -> tuple[str, str]:
        csrf = secrets.token_urlsafe(24)
        return self._serializer.dumps({"tid": token_id, "csrf": csrf}), csrf

    def read(self, cookie: str) -> dict[str, str] | None:
        try:
            data = self._serializer.loads(cookie, max_age=SESSION_MAX_AGE_S)
        except BadSignature:
            return None
        return data if isinstance(data, dict) else None


class AuthMiddleware:
    def __init__(
        self, app: ASGIApp, *, engine: Engine, keys: Keys, sessions: Sessions, enabled: bool
    ) -> None:
        self.app, self.engine, self.keys, self.enabled = app, engine, keys, enabled
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.enabled:
            scope[PRINCIPAL] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        need = needed_role(method, path)
        if need is None:  # public: the health probe, signing in and out, the studio's assets
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            principal, csrf = await self._authenticate(headers)
        except UnauthenticatedError as e:
            await self._refuse(scope, receive, send, headers, e)
            return
        if principal is not None:
            scope[PRINCIPAL] = principal
        if csrf is not None:
            scope[CSRF] = csrf
        try:
            if principal is None:
                raise UnauthenticatedError(NO_TOKEN)
            if csrf is not None and method not in SAFE_METHODS:
                _check_csrf(headers, csrf)
            _check_rights(principal, method, path, need)
            if principal.job is not None and creates_run(method, path):
                receive = await self._attribute_run(principal, scope, receive)
            elif principal.job is not None and method == "POST" and _RUN_UPDATE.match(path):
                receive = await self._hold_run(scope, receive)
        except FlowyardError as e:
            await self._refuse(scope, receive, send, headers, e)
            return
        await self.app(scope, receive, send)

    async def _authenticate(self, headers: Headers) -> tuple[Principal | None, str | None]:
        """The request's principal (None without a credential) and, for a session, its CSRF
        token; raises when a credential is given but not valid."""
        scheme, _, raw = headers.get("authorization", "").partition(" ")
        if token := headers.get(TOKEN_HEADER, "").strip():
            # Flowyard's MLflow plugin names the token for the workspace being called; MLflow
            # itself may also send a stale MLFLOW_TRACKING_TOKEN (see flowyard.mlflow_headers).
            scheme, raw = "bearer", token
        if scheme.lower() == "bearer" and raw.strip():
            principal = service.cached(raw.strip()) or await run_in_threadpool(
                self._resolve, raw.strip()
            )
            if principal is None:
                raise UnauthenticatedError(BAD_TOKEN)
            return principal, None
        cookie = cookie_parser(headers.get("cookie", "")).get(self.sessions.cookie)
        if not cookie:
            return None, None
        session = self.sessions.read(cookie)
        if session is None:
            raise UnauthenticatedError("Your studio session has expired; sign in again.")
        token_id = session.get("tid", "")
        principal = service.cached_id(token_id) or await run_in_threadpool(
            self._resolve_id, token_id
        )
        if principal is None:
            raise UnauthenticatedError(BAD_TOKEN)
        return principal, session.get("csrf", "")

    def _resolve(self, raw: str) -> Principal | None:
        with Session(self.engine) as session:
            return service.resolve(session, self.keys, raw)

    def _resolve_id(self, token_id: str) -> Principal | None:
        with Session(self.engine) as session:
            return service.resolve_id(session, token_id)

    async def _attribute_run(self, principal: Principal, scope: Scope, receive: Receive) -> Receive:
        """Rewrites a run a job creates as its submitter's, tagged with the job; returns a
        ``receive`` that hands the app the new body."""
        job = principal.job
        assert job is not None

        async def attribute(body: dict[str, object]) -> dict[str, object]:
            return attribute_run(body, job, principal.user)

        return await _rewrite_body(
            scope,
            receive,
            attribute,
            "A run's creation must be a JSON object whose tags are a list; send what "
            "MlflowClient.create_run sends.",
        )

    async def _hold_run(self, scope: Scope, receive: Receive) -> Receive:
        """A job's code may not end a job's run while the job goes on: the user's own
        ``with mlflow.start_run()`` resumes the run and ends it on leaving, before the job's
        outputs are uploaded, and whatever the job's own end turns out to be. Returns a
        ``receive`` that hands the app the update, held RUNNING where it would end a live
        job's run."""

        async def hold(body: dict[str, object]) -> dict[str, object]:
            run_id = body.get("run_id") or body.get("run_uuid")
            if body.get("status") not in lifecycle.ENDING_RUN_STATUSES or not isinstance(
                run_id, str
            ):
                return body
            if await run_in_threadpool(self._job_goes_on, run_id):
                return lifecycle.hold_run(body)
            return body

        return await _rewrite_body(
            scope,
            receive,
            hold,
            "A run's update must be a JSON object; send what MlflowClient.set_terminated sends.",
        )

    def _job_goes_on(self, run_id: str) -> bool:
        """Whether ``run_id`` is the run of a job that has not ended (one primary-key read)."""
        with Session(self.engine) as session:
            status = session.scalar(sa.select(Job.status).where(Job.id == run_id))
        return status is not None and not JobStatus(status).is_final

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, headers: Headers, error: FlowyardError
    ) -> None:
        response: Response
        if isinstance(error, UnauthenticatedError) and _wants_page(scope, headers):
            query = scope.get("query_string", b"").decode(errors="replace")
            target = scope["path"] + (f"?{query}" if query else "")
            response = RedirectResponse(f"{STUDIO}/login?next={quote(target)}", status_code=303)
            response.delete_cookie(self.sessions.cookie, path="/")
        else:
            response = JSONResponse(error.to_payload(), status_code=error.http_status)
            if isinstance(error, UnauthenticatedError):
                response.headers["WWW-Authenticate"] = 'Bearer realm="flowyard"'
        await response(scope, receive, send)


async def _rewrite_body(
    scope: Scope,
    receive: Receive,
    rewrite: Callable[[dict[str, object]], Awaitable[dict[str, object]]],
    malformed: str,
) -> Receive:
    """Reads a small JSON request body and hands the app ``rewrite(body)`` instead; returns the
    ``receive`` that replays it."""
    too_big = PayloadTooLargeError(
        f"A run's creation or update is over {MAX_INSPECTED_BODY} bytes; send fewer tags."
    )
    # Refused as announced, before waiting for a body that would be refused once it came.
    declared = Headers(scope=scope).get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_INSPECTED_BODY:
        raise too_big
    try:
        raw, cut_short = await read_body(receive, MAX_INSPECTED_BODY)
    except BodyOverLimit:
        raise too_big from None
    if cut_short is not None:  # the client went away: the app sees it too
        return replay(raw, cut_short, receive)
    try:
        parsed = json.loads(raw)
        if not isinstance(parsed, dict):
            raise ValueError("not an object")
        body = json.dumps(await rewrite(parsed)).encode()
    except (ValueError, RecursionError):
        raise InvalidRequestError(malformed) from None
    scope["headers"] = [
        (name, value)
        for name, value in scope["headers"]
        if name not in (b"content-length", b"transfer-encoding")
    ] + [(b"content-length", str(len(body)).encode())]
    return replay(body, None, receive)


def _check_rights(principal: Principal, method: str, path: str, need: Role) -> None:
    if (job_id := runner_call(method, path)) is not None:
        if principal.job is None or principal.job.id != job_id:
            raise PermissionDeniedError(
                f"{method} {path} is a runner's call: only job {job_id}'s own runner, with that "
                "job's token, may make it; no user's token can, whatever its role."
            )
        return
    if principal.role >= need:
        return
    if principal.job is not None:
        raise PermissionDeniedError(
            f"Job {principal.job.id} acts for {principal.user} with a contributor's rights, and "
            f"cannot {method} {path}, which needs a {need.label} token; do it outside the job."
        )
    raise PermissionDeniedError(
        f"{principal.user}'s {principal.role.label} token cannot {method} {path}; "
        f"it needs a {need.label} token, which a workspace owner can create."
    )


def _check_csrf(headers: Headers, expected: str) -> None:
    sent = headers.get(CSRF_HEADER, "")
    if sent and secrets.compare_digest(sent, expected):
        return
    origin = headers.get("origin")
    if origin and urlsplit(origin).netloc == headers.get("host"):
        return  # same-origin: what MLflow's own UI sends
    raise PermissionDeniedError(
        "A signed-in studio request that changes something must come from the studio's own "
        "pages (CSRF check failed); reload the page and try again."
    )


def _wants_page(scope: Scope, headers: Headers) -> bool:
    """A browser navigating (to the studio or MLflow's UI), not an API client."""
    path: str = scope["path"]
    return (
        scope["method"] == "GET"
        and "text/html" in headers.get("accept", "")
        and not path.startswith(("/api/", "/ajax-api/"))
    )
