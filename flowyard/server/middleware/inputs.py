"""Text and numbers the database cannot hold, refused at the door of Flowyard's API.

JSON lets a client send an unpaired surrogate (``"\\ud800"``), which Python decodes but cannot
encode back as UTF-8: a compute saved with one made every later listing of computes fail. A NUL
character is refused by PostgreSQL in text and JSON, and ``NaN``/``Infinity`` (which Python's JSON
reader accepts) are not JSON at all. This guard answers all three with a 400 naming where they
are, before any handler runs.

MLflow's own routes read JSON with Python's parser and no bound on nesting: a body nested some
thousands deep, or one that is a JSON list, made them answer an HTML 500. Their JSON bodies are
checked for shape (an object, nested at most :data:`MAX_DEPTH` deep, UTF-8) but not for values:
MLflow stores NaN metrics on purpose. A 500 that MLflow still answers in HTML on its API (or an
exception that escapes it) is answered in JSON, which its clients can read; its 503s (a database
outage) carry ``Retry-After``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard import defaults
from flowyard.errors import InvalidRequestError
from flowyard.server.middleware.body import read_body, replay, send_json_error
from flowyard.server.middleware.limits import BLOB_ROUTE, LOG_ROUTE
from flowyard.server.middleware.outages import OUTAGES

logger = logging.getLogger(__name__)

# Deeper than any body MLflow or Flowyard defines; far below what Python's parser can recurse.
MAX_DEPTH = 64
TOO_DEEP = (
    f"The request body is nested more than {MAX_DEPTH} levels deep; send the flat JSON object "
    "the API describes."
)
# MLflow's JSON API (and its UI's GraphQL), minus its UI's upload route, whose body is a file.
_MLFLOW_JSON = re.compile(r"/(?:api|ajax-api)/[23]\.0/mlflow/(?!upload-artifact$).+|/graphql")
# MLflow's API and the two artifact downloads its UI fetches.
_MLFLOW_API = re.compile(r"/(?:api|ajax-api)/|/get-artifact$|/model-versions/get-artifact$")


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
    stack: list[tuple[str, Any, int]] = [("the body", document, 1)]
    while stack:
        where, value, depth = stack.pop()
        if isinstance(value, dict | list) and depth > MAX_DEPTH:
            return TOO_DEEP
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
                stack.append((f"{where}.{key}" if where != "the body" else key, item, depth + 1))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", item, depth + 1) for i, item in enumerate(value))
    return None


def _too_deep(document: Any) -> bool:
    stack = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)
    return False


def mlflow_body_problem(body: bytes) -> str | None:
    """Why MLflow could not take this JSON body as a request message, or None."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return "The request body is not valid UTF-8; send JSON as UTF-8 text."
    try:
        document = json.loads(text)
        # MLflow decodes a body that is a JSON string once more: old clients send that.
        if isinstance(document, str):
            document = json.loads(document)
    except RecursionError:
        return TOO_DEEP
    except ValueError:
        return "The request body is not valid JSON; send the JSON object the API describes."
    if document is not None and not isinstance(document, dict):
        return (
            f"The request body is a JSON {type(document).__name__}; send the JSON object the "
            "API describes."
        )
    # A body with no more brackets than the bound cannot be nested deeper: no walk needed.
    if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(document):
        return TOO_DEEP
    return None


class InputGuard:
    """ASGI middleware applying :func:`body_problem` to Flowyard's JSON bodies, and refusing NUL
    characters in its paths and query strings."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _MLFLOW_JSON.fullmatch(scope["path"]):
            await self._mlflow(scope, receive, send)
            return
        if not scope["path"].startswith(defaults.API_PREFIX):
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
        except RecursionError:
            problem = TOO_DEEP
        except ValueError:
            problem = None  # not JSON: FastAPI says so in its own words
        if problem:
            await _refuse(send, problem)
            return
        await self.app(scope, replay(body, None, receive), send)

    async def _mlflow(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in ("GET", "HEAD") or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        body, cut_short = await read_body(receive)
        problem = mlflow_body_problem(body) if body and cut_short is None else None
        if problem:
            await _refuse(send, problem, "INVALID_PARAMETER_VALUE")
            return
        await self.app(scope, replay(body, cut_short, receive), send)


class JsonServerErrors:
    """ASGI middleware answering a 500 that MLflow's app makes in HTML or plain text on its API
    (an exception its handlers did not catch), or an exception that escapes it before it
    answers, with a JSON one, as its clients expect; the body is never buffered, only dropped."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or not _MLFLOW_API.match(path)
            or path.startswith(defaults.API_PREFIX)
        ):
            await self.app(scope, receive, send)
            return
        replacing = started = False

        async def send_json_errors(message: Message) -> None:
            nonlocal replacing, started
            started = True
            if message["type"] == "http.response.start" and message["status"] == 503:
                # MLflow's store answers a database outage as TEMPORARILY_UNAVAILABLE; say when
                # to ask again, as Flowyard's own 503s do.
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", str(defaults.RETRY_AFTER_S).encode()))
                message = {**message, "headers": headers}
            if message["type"] == "http.response.start" and message["status"] == 500:
                types = [v for k, v in message.get("headers", []) if k.lower() == b"content-type"]
                replacing = not any(b"json" in v for v in types)
                if replacing:
                    status = message["status"]
                    logger.error("MLflow answered %s %s with a %s", scope["method"], path, status)
                    return
            if replacing:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    await send_json_error(send, 500, "INTERNAL_ERROR", INTERNAL)
                return
            await send(message)

        try:
            await self.app(scope, receive, send_json_errors)
        except OUTAGES:
            raise  # answered as a 503 by DatabaseOutages
        except Exception:
            if started:
                raise
            logger.exception("MLflow failed on %s %s", scope["method"], path)
            await send_json_error(send, 500, "INTERNAL_ERROR", INTERNAL)


INTERNAL = (
    "The workspace failed to answer this MLflow request (an internal error, logged on the "
    "server); retry it, and report it to the workspace's owner if it persists."
)


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return False


async def _refuse(send: Send, message: str, code: str = InvalidRequestError.code) -> None:
    """A 400: Flowyard's error code on its API, MLflow's own on MLflow's."""
    await send_json_error(send, InvalidRequestError.http_status, code, message)
