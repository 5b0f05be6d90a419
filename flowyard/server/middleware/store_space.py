"""Uploads into a full artifact store: refused before a byte is written where the upload says its
size, and where the store fills up midway, answered as full (507) with the half-written file
taken away, instead of MLflow's bare 500 and a truncated artifact that readers would see.

Only a store that is a local folder is watched: an object store's own limits answer for it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard import defaults, disks
from flowyard.errors import StorageFullError
from flowyard.server.middleware.body import send_json_error

# Uploads into the store: MLflow's artifact proxy (a path in the store), its UI's upload route,
# and Flowyard's snapshot blobs.
_ARTIFACT = re.compile(r"/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts/(.+)", re.DOTALL)
_UPLOADS = re.compile(
    rf"(?:/(?:api|ajax-api)/2\.0/mlflow/upload-artifact|{defaults.API_PREFIX}/blobs/.+)"
)
log = logging.getLogger(__name__)
# Room kept free beyond an upload's own size: the store's folders, MLflow's temp files.
MARGIN_BYTES = 64 * 1024


class StoreSpace:
    """ASGI middleware answering uploads into a full local artifact store with 507."""

    def __init__(self, app: ASGIApp, destination: str) -> None:
        self.app = app
        self.folder = disks.local_folder(destination)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.folder is None or scope["type"] != "http" or scope["method"] not in ("PUT", "POST"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        artifact = _ARTIFACT.fullmatch(path)
        if artifact is None and _UPLOADS.fullmatch(path) is None:
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length", "")
        need = int(length) if length.isdigit() else 0
        room = disks.usage(self.folder)
        if room is not None and need + MARGIN_BYTES > room.free:
            await self._full(send, f"this upload of {need:,} bytes", None)
            return
        held: Message | None = None
        body: list[bytes] = []
        sent = False

        async def guarded(message: Message) -> None:
            nonlocal held, sent
            if message["type"] == "http.response.start" and message["status"] == 500:
                held = message  # kept back until the app is done: a full store makes it a 507
            elif held is not None:
                body.append(message.get("body", b""))
            else:
                sent = True
                await send(message)

        try:
            await self.app(scope, receive, guarded)
        except Exception as e:
            if sent or not (disks.is_full(e) or self._filled()):
                raise
            log.warning("%s %s: %s", scope["method"], path, e)
            await self._full(send, "this upload", artifact)
            return
        if held is not None:
            if self._filled():
                await self._full(send, "this upload", artifact)
                return
            await send(held)
            await send({"type": "http.response.body", "body": b"".join(body)})

    def _filled(self) -> bool:
        assert self.folder is not None
        room = disks.usage(self.folder)
        return room is not None and room.free <= MARGIN_BYTES

    def _take_away(self, relative: str) -> None:
        """The truncated file an upload left in the store (never anything outside it)."""
        assert self.folder is not None
        root = self.folder.resolve()
        target = (root / relative).resolve()
        if target.is_relative_to(root) and target != root and target.is_file():
            target.unlink(missing_ok=True)

    async def _full(self, send: Send, what: str, artifact: re.Match[str] | None) -> None:
        assert self.folder is not None
        if artifact is not None:
            self._take_away(unquote(artifact.group(1)))
        error = StorageFullError(disks.full_message(self.folder, what))
        await send_json_error(send, error.http_status, error.code, error.message)
