"""Masking a job's secret values out of its output before it is kept or sent anywhere."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = b"***"
# Shorter values would mask ordinary words and numbers all over the log: not worth calling secret.
MIN_SECRET_LEN = 4


class Masker:
    """Replaces each secret value in a stream of chunks with ``***``, also where a value is split
    between two chunks: the last ``longest - 1`` bytes wait for the next chunk (or the end), but
    for a whole line when no secret spans lines (a live log shows `waiting` as it is printed)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted(
            {s.encode() for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len, reverse=True
        )
        self._pattern = re.compile(b"|".join(re.escape(v) for v in values)) if values else None
        self._keep = max((len(v) for v in values), default=1) - 1
        self._lines_end_values = not any(b"\n" in v for v in values)
        self._pending = b""

    def feed(self, chunk: bytes, *, final: bool = False) -> bytes:
        """The part of the stream so far that can be let out, masked."""
        if self._pattern is None:
            return chunk
        data = self._pending + chunk
        cut = len(data) if final else max(0, len(data) - self._keep)
        if self._lines_end_values:
            cut = max(cut, data.rfind(b"\n") + 1)
        out = bytearray()
        pos = 0
        for match in self._pattern.finditer(data):
            if match.start() >= cut:
                break
            out += data[pos : match.start()] + MASK
            pos = match.end()
        cut = max(cut, pos)
        out += data[pos:cut]
        self._pending = data[cut:]
        return bytes(out)
