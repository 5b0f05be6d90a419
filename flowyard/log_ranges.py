"""Which bytes of a job's log its stderr wrote: sorted, disjoint ``[start, end)`` byte ranges.

The log itself stays one stream of bytes, exactly as the job printed it (the download has no
markers in it); the ranges travel beside it, from the runner with each appended piece (relative
to the piece, as ``0-12,40-95`` in the append's ``stderr`` parameter) and in the workspace with
each stored chunk. A line is a stderr line when any of its bytes is in a range.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, MutableSequence, Sequence

from flowyard.errors import InvalidRequestError

Range = tuple[int, int]

# The most ranges one appended piece carries: the runner ends a piece early rather than send
# more (a job alternating streams line by line), so the parameter stays a few KiB at most,
# well inside the 16 KiB a request's head may take (uvicorn refuses a longer one).
MAX_RANGES = 128
_RANGE = re.compile(r"(\d{1,12})-(\d{1,12})")


def add(ranges: MutableSequence[Range], start: int, end: int) -> None:
    """Add ``[start, end)``, which starts at or after the last range, to ``ranges``: merged with
    the last one where they touch."""
    if end <= start:
        return
    if ranges and ranges[-1][1] >= start:
        ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
    else:
        ranges.append((start, end))


def window(ranges: Iterable[Sequence[int]], start: int, end: int) -> list[Range]:
    """The parts of ``ranges`` (as ``(start, end)`` pairs, or lists stored as JSON) within
    ``[start, end)``, relative to ``start``."""
    out: list[Range] = []
    for a, b in ranges:
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            out.append((lo - start, hi - start))
    return out


def piece(ranges: Iterable[Range], start: int, limit: int) -> tuple[int, list[Range]]:
    """The piece of the log from ``start`` to send next, ``limit`` bytes at most: its length,
    cut short so that it carries at most :data:`MAX_RANGES` ranges, and its ranges, relative
    to ``start``. ``ranges`` are sorted and none ends before ``start``."""
    out: list[Range] = []
    end = start + limit
    for a, b in ranges:
        if a >= end:
            break
        if len(out) == MAX_RANGES:
            end = a
            break
        out.append((max(a, start) - start, min(b, end) - start))
    return end - start, out


def drop(ranges: deque[Range], before: int) -> None:
    """Forget what ``ranges`` (sorted) hold before ``before``."""
    while ranges and ranges[0][1] <= before:
        ranges.popleft()
    if ranges and ranges[0][0] < before:
        ranges[0] = (before, ranges[0][1])


def encode(ranges: Iterable[Range]) -> str:
    return ",".join(f"{a}-{b}" for a, b in ranges)


def parse(text: str, length: int) -> list[Range]:
    """The ranges an append's ``stderr`` parameter names, for a piece of ``length`` bytes.

    Raises:
        InvalidRequestError: a range that is malformed, empty, past the piece, out of order or
            overlapping another, or more than :data:`MAX_RANGES` of them.
    """
    if not text:
        return []
    parts = text.split(",")
    if len(parts) > MAX_RANGES:
        raise InvalidRequestError(
            f"A log append names {len(parts)} stderr ranges, more than the {MAX_RANGES} one "
            "piece may carry; send the log in smaller pieces."
        )
    out: list[Range] = []
    for part in parts:
        m = _RANGE.fullmatch(part)
        if m is None:
            raise InvalidRequestError(
                f"The log append's stderr range {part[:40]!r} is not START-END; give byte "
                "offsets within the piece, such as 0-12."
            )
        a, b = int(m.group(1)), int(m.group(2))
        if not a < b <= length:
            raise InvalidRequestError(
                f"The log append's stderr range {a}-{b} is empty or past the piece's "
                f"{length} bytes; give ranges within the piece, each start below its end."
            )
        if out and a < out[-1][1]:
            raise InvalidRequestError(
                f"The log append's stderr range {a}-{b} overlaps or precedes the one before "
                "it; give ranges in order, without overlaps."
            )
        add(out, a, b)
    return out


class Marks:
    """Answers, for lines met in the log's order, whether each holds a byte of ``ranges``
    (absolute offsets, sorted); ranges can be fed as the pages holding them are read."""

    def __init__(self, ranges: Iterable[Range] = ()) -> None:
        self._ranges: list[Range] = list(ranges)
        self._at = 0

    def extend(self, ranges: Iterable[Range]) -> None:
        del self._ranges[: self._at]  # passed: a long scan holds only the ranges ahead
        self._at = 0
        self._ranges.extend(ranges)

    def hit(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` overlaps a range; starts must not go backwards."""
        ranges = self._ranges
        while self._at < len(ranges) and ranges[self._at][1] <= start:
            self._at += 1
        return self._at < len(ranges) and ranges[self._at][0] < end
