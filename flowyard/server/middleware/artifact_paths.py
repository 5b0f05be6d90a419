"""A guard in front of MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/...``) and the calls
that decide where MLflow stores artifacts.

MLflow refuses ``..`` and absolute paths itself, but (checked against MLflow 3.17) it deletes the
whole artifact root for ``DELETE .../artifacts/.``, answers 500 to a name too long for the
filesystem, stores names with backslashes or control characters, and lets anyone overwrite or
delete Flowyard's snapshot blobs, which live in the same store under ``flowyard/``. This guard
answers those with a 400 or 403 in MLflow's error format before MLflow sees them.

MLflow also lets whoever may create an experiment give it any ``artifact_location`` (``/tmp/x``,
``file:///home/...``, ``s3://...``): its UI's upload route then writes there, and its download
routes read from there, as the server's user. Every experiment of a workspace keeps its artifacts
in the workspace's store (``mlflow-artifacts:/``), and a model version's source is a run's or a
logged model's artifacts, so anything else is refused too.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from mlflow.exceptions import MlflowException
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from flowyard import defaults
from flowyard.server.middleware.body import BodyOverLimit, read_body, replay, send_json_error
from flowyard.server.services import runs
from flowyard.server.services.snapshots import BLOB_PREFIX

# The routes of MLflow's proxy whose path is an artifact path: reads, uploads, deletes and
# multipart uploads, under both of MLflow's API prefixes.
_ROUTE = re.compile(
    r"/(?:api|ajax-api)/2\.0/mlflow-artifacts/(?:artifacts|mpu/(?:create|complete|abort))/(.*)",
    re.DOTALL,
)
# MLflow's calls whose JSON body names a storage location, and its UI's upload route, whose
# ``path`` query names the artifact inside a run's folder.
_LOCATION_ROUTE = re.compile(
    r"/(?:api|ajax-api)/2\.0/mlflow/(experiments/create|model-versions/create)"
)
_UPLOAD_ROUTE = re.compile(r"/(?:api|ajax-api)/2\.0/mlflow/upload-artifact")
_RESERVED = BLOB_PREFIX.split("/")[0]
_WRITES = {"PUT", "POST", "DELETE", "PATCH"}
_STORE_SCHEME = "mlflow-artifacts"
# Where a model version may come from besides the store: MLflow resolves these itself, checking
# that the run or logged model they name holds the source.
_SOURCE_SCHEMES = {"runs", "models"}
_PROMPT_SOURCES = {"dummy-source", "prompt-template"}  # MLflow's placeholders for prompts
# Experiment and model-version bodies are small; a bigger one is not held to be looked at.
MAX_LOCATION_BODY = 1024 * 1024


def artifact_path_problem(
    method: str, path: str, *, in_run: bool = False
) -> tuple[int, str] | None:
    """The status and message that refuse an artifact path, or None to let MLflow have it.

    ``in_run``: the path is inside a run's artifact folder, so the store's own top-level names
    do not apply.
    """
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
    if parts[0] == _RESERVED and method in _WRITES and not in_run:
        return 403, (
            f"The artifact path {shown} is inside {_RESERVED}/, where the workspace keeps its "
            "snapshot blobs; log the artifact under another path."
        )
    return None


def _in_store(uri: str) -> bool:
    """``mlflow-artifacts:/<plain relative path>``: a folder of the workspace's own store."""
    parts = urlsplit(uri)
    return (
        parts.scheme == _STORE_SCHEME
        and not parts.netloc
        and not parts.query
        and not parts.fragment
        and (
            not parts.path.strip("/") or artifact_path_problem("PUT", parts.path.strip("/")) is None
        )
    )


def location_problem(endpoint: str, body: Any) -> str | None:
    """Why a create call's body would store artifacts outside the workspace, or None."""
    if isinstance(body, str):
        try:  # MLflow decodes a body that is a JSON string once more (old clients send that)
            body = json.loads(body)
        except (ValueError, RecursionError):
            return None
    if not isinstance(body, dict):
        return None
    if endpoint == "experiments/create":
        # MLflow reads a protobuf message from the body, which takes a field's camelCase name too.
        for field in ("artifact_location", "artifactLocation"):
            location = body.get(field)
            if isinstance(location, str) and location and not _in_store(location):
                break
        else:
            return None
        return (
            f"The artifact_location {_shown(location)} is outside the workspace's artifact "
            f"store; leave it empty (the workspace picks a folder) or give one under "
            f"{_STORE_SCHEME}:/."
        )
    source = body.get("source")
    if not isinstance(source, str) or source in _PROMPT_SOURCES or _in_store(source):
        return None
    if urlsplit(source).scheme in _SOURCE_SCHEMES:
        return None
    return (
        f"The model version source {_shown(source)} is outside the workspace's artifact store; "
        "register a model logged to the workspace (runs:/<run id>/<path> or models:/<model id>)."
    )


def _run_outside_store(run_id: str) -> tuple[int, str] | None:
    """A refusal when the run's artifacts live outside the store: an experiment given such a
    location before the workspace refused them."""
    try:
        uri = runs.artifact_uri(run_id)
    except MlflowException:
        return None  # no such run: MLflow says so
    if _in_store(uri):
        return None
    return 400, (
        f"Run {run_id}'s artifacts live at {_shown(uri)}, outside the workspace's artifact "
        "store; upload to a run of an experiment whose artifact_location is under "
        f"{_STORE_SCHEME}:/."
    )


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."


class ArtifactPathGuard:
    """ASGI middleware refusing the artifact paths :func:`artifact_path_problem` names and the
    storage locations :func:`location_problem` names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        problem: tuple[int, str] | None = None
        if match := _ROUTE.fullmatch(path):
            problem = artifact_path_problem(method, match.group(1))
        elif _UPLOAD_ROUTE.fullmatch(path):
            query = parse_qsl(scope["query_string"].decode(errors="surrogateescape"))
            named = next((value for key, value in query if key == "path"), "")
            problem = artifact_path_problem(method, named, in_run=True) if named else None
            run_id = next((value for key, value in query if key == "run_uuid"), "")
            if problem is None and run_id:
                problem = await run_in_threadpool(_run_outside_store, run_id)
        elif (match := _LOCATION_ROUTE.fullmatch(path)) and method == "POST":
            try:
                body, cut_short = await read_body(receive, MAX_LOCATION_BODY)
            except BodyOverLimit:
                await _refuse(
                    send, 413, f"This {match.group(1)} body is over 1 MiB; send a smaller one."
                )
                return
            receive = replay(body, cut_short, receive)
            try:
                message = location_problem(match.group(1), json.loads(body)) if body else None
            except (ValueError, RecursionError):
                message = None  # not JSON: MLflow and the input guard say so
            problem = (400, message) if message else None
        if problem:
            status, message = problem
            await _refuse(send, status, message)
            return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int, message: str) -> None:
    code = {403: "PERMISSION_DENIED", 413: "REQUEST_LIMIT_EXCEEDED"}.get(
        status, "INVALID_PARAMETER_VALUE"
    )
    await send_json_error(send, status, code, message)
