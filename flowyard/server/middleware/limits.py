"""Bounds on request bodies, enforced before and while a body is read.

A body announced as too big (``Content-Length``) is answered 413 before the app sees it. A body
sent without a length is counted as it is read; past the bound, reading it raises, and whatever the
app would have answered is replaced by the 413, so a handler that spools a body (a blob upload)
stops at the bound and cleans up as for any failed upload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard import defaults
from flowyard.errors import PayloadTooLargeError
from flowyard.server.middleware.body import send_json_error
from flowyard.server.settings import ServerSettings

MB = 1_000_000
KIB = 1024
# The two routes whose bodies are raw bytes, bounded on their own.
BLOB_ROUTE = re.compile(rf"{re.escape(defaults.API_PREFIX)}/blobs/[^/]+")
LOG_ROUTE = re.compile(rf"{re.escape(defaults.API_PREFIX)}/jobs/[^/]+/logs")


@dataclass(frozen=True)
class Limit:
    """A bound of ``amount`` ``unit`` (of ``factor`` bytes each) on the body of ``what``."""

    amount: float
    unit: str
    factor: int
    what: str
    fix: str

    @property
    def bytes(self) -> int:
        return int(self.amount * self.factor)

    def message(self, size: int | None = None) -> str:
        sent = f"of {size / self.factor:,.1f} {self.unit} " if size is not None else ""
        return (
            f"This request's body {sent}is over the workspace's limit of {self.amount:g} "
            f"{self.unit} for {self.what}; {self.fix}."
        )


def limit_for(settings: ServerSettings, method: str, path: str) -> Limit | None:
    """The bound on a request's body, or None for MLflow's artifact uploads, which MLflow streams
    to the artifact store (a model may be many GB)."""
    if method == "PUT" and BLOB_ROUTE.fullmatch(path):
        return Limit(
            settings.max_blob_mb,
            "MB",
            MB,
            "one snapshot file",
            "list the file in the project's .flowyardignore and let the job read it from "
            "elsewhere, or start the server with a higher --max-blob-mb",
        )
    if method == "POST" and LOG_ROUTE.fullmatch(path):
        return Limit(
            settings.max_log_append_kib,
            "KiB",
            KIB,
            "one log append",
            "send the log in smaller pieces, or start the server with a higher "
            "--max-log-append-kib",
        )
    if "/mlflow-artifacts/" in path and not path.startswith(defaults.API_PREFIX):
        return None
    return Limit(
        settings.max_body_mb,
        "MB",
        MB,
        "a request",
        "send less in one request, or start the server with a higher --max-body-mb",
    )


class BodyLimits:
    """ASGI middleware answering 413 to a body over :func:`limit_for`'s bound."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limit_for(self.settings, scope["method"], scope["path"])
        if limit is None:
            await self.app(scope, receive, send)
            return
        announced = _content_length(scope)
        if announced is not None and announced > limit.bytes:
            await _too_large(scope, send, limit.message(announced))
            return

        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    over = True
                    raise PayloadTooLargeError(limit.message())
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                return  # the 413 below replaces whatever the app makes of the failed read
            started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _too_large(scope, send, limit.message())


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(scope: Scope, send: Send, message: str) -> None:
    # Flowyard's clients map error codes to its error classes; MLflow's client knows only its own
    # codes, and REQUEST_LIMIT_EXCEEDED is the one that fits.
    ours = scope["path"].startswith(defaults.API_PREFIX)
    code = PayloadTooLargeError.code if ours else "REQUEST_LIMIT_EXCEEDED"
    # The rest of the body is not read; the client must not reuse the connection.
    await send_json_error(send, 413, code, message, headers=[(b"connection", b"close")])
