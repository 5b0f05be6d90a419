"""The body of a blob batch: many small blobs in one request.

Each blob is a header line, ``<sha256 as 64 hex characters> <size in bytes>\\n``, followed by
exactly that many bytes of content; a batch is its blobs one after another, and an empty body is
an empty batch. The server reads a batch whole (bounded as any request body is), so a batch
carries small blobs only; a big blob goes in a request of its own, streamed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from flowyard.errors import InvalidRequestError, PayloadTooLargeError

MEDIA_TYPE = "application/vnd.flowyard.blob-batch"
_HEADER = re.compile(rb"([0-9a-f]{64}) (0|[1-9][0-9]{0,15})\n")
# 64 hex characters, a space, at most 16 digits and the newline.
_HEADER_MAX = 82


def encode(blobs: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The body carrying ``(digest, content)`` pairs, as chunks to send one after another."""
    for digest, content in blobs:
        yield f"{digest} {len(content)}\n".encode()
        yield content


def decode(body: bytes, *, max_blob_bytes: int, max_blobs: int) -> list[tuple[str, memoryview]]:
    """The ``(digest, content)`` pairs of a batch, content as views into ``body``.

    Digests are not checked against the content here. Raises InvalidRequestError for a
    malformed body and PayloadTooLargeError for a blob over ``max_blob_bytes`` or a batch of
    more than ``max_blobs``.
    """
    view = memoryview(body)
    blobs: list[tuple[str, memoryview]] = []
    at = 0
    while at < len(body):
        header = _HEADER.match(body, at, at + _HEADER_MAX)
        if header is None:
            raise InvalidRequestError(
                f"The blob batch has no valid blob header at byte {at:,}; each blob is a line "
                "'<sha256 hex> <size>' followed by that many bytes."
            )
        digest, size = header.group(1).decode(), int(header.group(2))
        if size > max_blob_bytes:
            raise PayloadTooLargeError(
                f"Blob {digest} in the batch has {size:,} bytes, over the workspace's limit of "
                f"{max_blob_bytes:,} for one snapshot file; list the file in the project's "
                ".flowyardignore, or start the server with a higher --max-blob-mb."
            )
        if len(blobs) == max_blobs:
            raise PayloadTooLargeError(
                f"The blob batch holds more than {max_blobs:,} blobs; send at most that many in "
                "one batch."
            )
        start = header.end()
        if start + size > len(body):
            raise InvalidRequestError(
                f"The blob batch ends inside blob {digest} ({len(body) - start:,} of {size:,} "
                "bytes); send each blob's whole content after its header."
            )
        blobs.append((digest, view[start : start + size]))
        at = start + size
    return blobs
