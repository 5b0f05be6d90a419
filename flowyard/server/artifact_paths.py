"""A guard in front of MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/...``).

MLflow refuses ``..`` and absolute paths itself, but (checked against MLflow 3.17) it deletes the
whole artifact root for ``DELETE .../artifacts/.``, answers 500 to a name too long for the
filesystem, stores names with backslashes or control characters, and lets anyone overwrite or
delete Flowyard's snapshot blobs, which live in the same store under ``flowyard/``. This guard
answers those with a 400 or 403 in MLflow's error format before MLflow sees them.
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

from flowyard import defaults
from flowyard.server.services.snapshots import BLOB_PREFIX

# The routes of MLflow's proxy whose path is an artifact path: reads, uploads, deletes and
# multipart uploads, under both of MLflow's API prefixes.
_ROUTE = re.compile(
    r"/(?:api|ajax-api)/2\.0/mlflow-artifacts/(?:artifacts|mpu/(?:create|complete|abort))/(.*)",
    re.DOTALL,
)
_RESERVED = BLOB_PREFIX.split("/")[0]
_WRITES = {"PUT", "POST", "DELETE", "PATCH"}


def artifact_path_problem(method: str, path: str) -> tuple[int, str] | None:
    """The status and message that refuse an artifact path, or None to let MLflow have it."""
    # Clients may encode a path more than once; MLflow decodes until it stops changing, so
    # the guard judges what MLflow will use.
    for _ in range(10):
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    shown = repr(path) if len(path) <= 80 else repr(path[:80]) + "..."
    fix = "log the artifact under a relative path with '/' between plain names"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return 400, f"The artifact path {shown} contains a control character; {fix}."
    if "\\" in path:
        return 400, f"The artifact path {shown} contains a backslash; {fix}."
    parts = path.split("/")
    if path.startswith("/") or any(p in (".", "..") for p in parts):
        return 400, f"The artifact path {shown} leaves or names its root folder; {fix}."
    if "" in parts and method in _WRITES:
        return 400, f"The artifact path {shown} has an empty part; {fix}."
    longest = max(len(p.encode(errors="surrogateescape")) for p in parts)
    if longest > defaults.SNAPSHOT_MAX_NAME_BYTES:
        return 400, (
            f"The artifact path {shown} has a name of {longest:,} bytes, over the "
            f"{defaults.SNAPSHOT_MAX_NAME_BYTES} bytes a file name may have; {fix}."
        )
    if parts[0] == _RESERVED and method in _WRITES:
        return 403, (
            f"The artifact path {shown} is inside {_RESERVED}/, where the workspace keeps its "
            "snapshot blobs; log the artifact under another path."
        )
    return None


class ArtifactPathGuard:
    """ASGI middleware refusing the artifact paths :func:`artifact_path_problem` names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            match = _ROUTE.fullmatch(scope["path"])
            problem = match and artifact_path_problem(scope["method"], match.group(1))
            if problem:
                status, message = problem
                await _refuse(send, status, message)
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    code = "PERMISSION_DENIED" if status == 403 else "INVALID_PARAMETER_VALUE"
    body = json.dumps({"error_code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
