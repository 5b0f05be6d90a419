"""Security headers on every response, and untrusted content made inert at the workspace's origin.

A project's files, a run's artifacts, outputs and logs are anyone's content: an ``x.html`` served
as a page of the workspace would run its scripts with the signed-in user's session. Every route
that serves such content raw gets ``Content-Security-Policy: sandbox`` (a document without
scripts, in an origin of its own), and its script-capable types are served as plain text or, for
SVG (which MLflow's UI shows as an image), as a download. The studio's own pages get a CSP that
allows only the studio's own scripts; MLflow's UI only ``frame-ancestors 'none'``, which its
scripts do not notice.
"""

from __future__ import annotations

import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from flowyard import defaults

STUDIO_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
PAGE_CSP = "frame-ancestors 'none'"
INERT_CSP = "sandbox"

# Routes whose responses are a file's bytes, as stored: MLflow's artifact downloads (run and
# model-version artifacts, the artifact proxy, trace and logged-model files), Flowyard's
# snapshot files, blobs, job logs and artifact previews, and the studio's log and code downloads.
_RAW = re.compile(
    r"/get-artifact|/model-versions/get-artifact"
    r"|/(?:api|ajax-api)/2\.0/mlflow-artifacts/artifacts/.*"
    r"|/(?:api|ajax-api)/[23]\.0/mlflow/(?:get-trace-artifact|logged-models/[^/]+/artifacts/.*)"
    rf"|{re.escape(defaults.API_PREFIX)}/(?:blobs/[^/]+|snapshots/[^/]+/files/.*|jobs/[^/]+/(?:logs|artifacts/.*))"
    r"|/studio/jobs/[^/]+/(?:log\.txt|snapshot\.zip)",
    re.DOTALL,
)
_STUDIO = re.compile(r"/studio(?:/.*)?", re.DOTALL)
# Raster images cannot run script; MLflow's UI shows them inline.
_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"})
_SVG = "image/svg+xml"
# Types a browser runs script in when it opens them (XHTML, SVG and XSLT are XML).
_ACTIVE = re.compile(r"html|xml|script|xsl")


def inert_type(content_type: str, disposition: str) -> tuple[str, str]:
    """The content type and disposition under which raw content cannot act as a page."""
    essence = content_type.split(";", maxsplit=1)[0].strip().lower()
    if essence in _IMAGES or not _ACTIVE.search(essence):
        return content_type, disposition
    if essence == _SVG:
        return content_type, disposition if disposition.startswith("attachment") else "attachment"
    return "text/plain; charset=utf-8", disposition


class SecurityHeaders:
    """ASGI middleware setting the headers above on every HTTP response, including refusals made
    by the middlewares inside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        raw = _RAW.fullmatch(path) is not None
        studio = _STUDIO.fullmatch(path) is not None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                content_type = headers.get("content-type", "")
                if raw:
                    headers["Content-Security-Policy"] = INERT_CSP
                    served, disposition = inert_type(
                        content_type, headers.get("content-disposition", "")
                    )
                    if served:
                        headers["Content-Type"] = served
                    if disposition:
                        headers["Content-Disposition"] = disposition
                elif content_type.startswith("text/html"):
                    headers["Content-Security-Policy"] = STUDIO_CSP if studio else PAGE_CSP
            await send(message)

        await self.app(scope, receive, send_with_headers)
