"""Text and numbers the database cannot hold, refused at the door of Flowyard's API.

JSON lets a client send an unpaired surrogate (``"\\ud800"``), which Python decodes but cannot
encode back as UTF-8: a compute saved with one made every later listing of computes fail. A NUL
character is refused by PostgreSQL in text and JSON, and ``NaN``/``Infinity`` (which Python's JSON
reader accepts) are not JSON at all. This guard answers all three with a 400 naming where they
are, before any handler runs.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from flowyard import defaults
from flowyard.errors import InvalidRequestError
from flowyard.server.asgi import read_body, replay
from flowyard.server.limits import BLOB_ROUTE, LOG_ROUTE


def _text_problem(text: str) -> str | None:
    if "\0" in text:
        return "contains a NUL character; remove it"
    try:
        text.encode()
    except UnicodeEncodeError:
        return "contains an unpaired surrogate; send text as valid UTF-8"
    return None


def body_problem(document: Any) -> str | None:
    """Where in a parsed JSON body a value the workspace cannot store is, and why."""
    stack: list[tuple[str, Any]] = [("the body", document)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem:
                return f"The value at {where} {problem}."
        elif isinstance(value, float) and not math.isfinite(value):
            return (
                f"The value at {where} is NaN or Infinity, which JSON does not allow; send a "
                "finite number."
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                problem = _text_problem(key)
                if problem:
                    return f"A key in {where} {problem}."
                stack.append((f"{where}.{key}" if where != "the body" else key, item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item) for i, item in enumerate(value))
    return None


class InputGuard:
    """ASGI middleware applying :func:`body_problem` to Flowyard's JSON bodies, and refusing NUL
    characters in its paths and query strings."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(defaults.API_PREFIX):
            await self.app(scope, receive, send)
            return
        if "\0" in scope["path"] or b"\0" in unquote_to_bytes(scope["query_string"]):
            await _refuse(send, "The request's path or query contains a NUL character; remove it.")
            return
        # Blob and log bodies are raw bytes (a blob may be a GB), whatever their content type.
        path = scope["path"]
        if not _is_json(scope) or BLOB_ROUTE.fullmatch(path) or LOG_ROUTE.fullmatch(path):
            await self.app(scope, receive, send)
            return
        body, cut_short = await read_body(receive)
        if cut_short is not None:
            await self.app(scope, replay(body, cut_short, receive), send)
            return
        try:
            problem = body_problem(json.loads(body)) if body else None
        except (ValueError, RecursionError):
            problem = None  # not JSON: FastAPI says so in its own words
        if problem:
            await _refuse(send, problem)
            return
        await self.app(scope, replay(body, None, receive), send)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False


async def _refuse(send: Send, message: str) -> None:
    error = InvalidRequestError(message)
    body = json.dumps(error.to_payload()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
