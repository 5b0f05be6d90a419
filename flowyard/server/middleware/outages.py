"""A database that stops answering for a moment (a failover, a restart, a reset connection)
answers as a JSON 503 with ``Retry-After``, never a plain 500, wherever the failure surfaces:
the token lookup of the auth middleware, Flowyard's routes or the studio's pages.

It is an outer middleware rather than an exception handler because the auth middleware runs
outside FastAPI's handlers. A request whose credential could not be checked is answered here,
never let through.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard import defaults
from flowyard.errors import DatabaseUnavailableError

logger = logging.getLogger(__name__)

# What a database or its connection pool raises when it cannot be reached or dropped the
# connection; a refused statement (IntegrityError, ProgrammingError) is a bug, not an outage.
OUTAGES: tuple[type[Exception], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
)

UNAVAILABLE = (
    "The workspace's database is not answering at the moment; retry in a few seconds, and ask "
    "the workspace's owner to check the database if it persists."
)


FULL = (
    "The workspace's database has no space left on its disk; retry in a while, and ask the "
    "workspace's owner to free space."
)
# How SQLite (SQLITE_FULL) and PostgreSQL (53100 disk_full) say it.
_FULL_MARKS = ("database or disk is full", "No space left on device", "could not extend file")


def unavailable_response(error: BaseException | None = None) -> JSONResponse:
    full = error is not None and any(mark in str(error) for mark in _FULL_MARKS)
    return JSONResponse(
        DatabaseUnavailableError(FULL if full else UNAVAILABLE).to_payload(),
        status_code=DatabaseUnavailableError.http_status,
        headers={"Retry-After": str(defaults.RETRY_AFTER_S)},
    )


def outage_in(error: BaseException) -> BaseException | None:
    """The database outage that caused ``error``, if one did: MLflow's store, for one, raises
    its own MlflowException from the driver's error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, OUTAGES):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class DatabaseOutages:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as raised:
            e = outage_in(raised)
            if e is None or started:  # not an outage; or a streamed answer cut short
                raise
            logger.warning(
                "The database failed %s %s: %s",
                scope["method"],
                scope["path"],
                str(e).strip().splitlines()[0],
            )
            await unavailable_response(e)(scope, receive, send)
