"""What the server's ASGI middlewares share: reading a request's body once, then handing it on to
the app as if it had never been read; and answering a refusal in JSON before the app sees it."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import Message, Receive, Send


class BodyOverLimit(Exception):
    """More than the caller's limit of bytes arrived (the rest is left unread)."""


async def read_body(receive: Receive, limit: int | None = None) -> tuple[bytes, Message | None]:
    """The whole body, and the message that cut it short (the client went away) or None.

    Raises :class:`BodyOverLimit` once more than ``limit`` bytes have arrived.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), message
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise BodyOverLimit
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def replay(body: bytes, cut_short: Message | None, receive: Receive) -> Receive:
    """A ``receive`` for the app that hands out what :func:`read_body` read, then the
    connection's own next messages. A body cut short is not handed out as if it were whole: the
    app gets the message that cut it."""
    pending: list[Message] = (
        [cut_short]
        if cut_short is not None
        else [{"type": "http.request", "body": body, "more_body": False}]
    )

    async def receive_again() -> Message:
        return pending.pop(0) if pending else await receive()

    return receive_again


async def send_json_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Answer ``{"error_code": code, "message": message}`` with ``status`` (and ``headers``)."""
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
