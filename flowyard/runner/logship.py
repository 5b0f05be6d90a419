"""Shipping a job's log to the workspace in offset-addressed pieces while it runs, with the
byte ranges its stderr wrote (see flowyard/log_ranges.py)."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from flowyard import log_ranges
from flowyard.log_ranges import Range

# Small enough that one append is quick, large enough that a chatty job needs few requests.
MAX_PIECE = 256 * 1024
# How long output may wait before it is sent: the live log lags the job by about this much.
FLUSH_INTERVAL_S = 0.2
# The end of the log the runner keeps to read the job's error from (a traceback's last frames):
# bounded in memory, so a job printing gigabytes costs the runner's host neither disk nor memory.
TAIL_BYTES = 64 * 1024


class LogShipper:
    """Collects output, keeps its tail, and sends it in order to ``append(offset, data,
    stderr)``, ``stderr`` being the ranges of ``data`` the job's stderr wrote.

    The job's two streams meet here a line at a time: a line not ended yet waits (up to
    :data:`FLUSH_INTERVAL_S`, so a progress bar redrawn with ``\\r`` still shows live) rather than
    be cut in half by the other stream's lines.

    ``append`` must be idempotent for one offset (the workspace's log append is) and may raise;
    a failed piece is retried from the same offset, so nothing is lost or duplicated.
    """

    def __init__(self, append: Callable[[int, bytes, list[Range]], int]) -> None:
        self._append = append
        self._buffer = bytearray()
        # The stderr ranges of what was taken into the buffer, counted from the first byte
        # taken; the buffer starts at `_base` in that count.
        self._stderr: deque[Range] = deque()
        self._base = 0
        # Each stream's line not ended yet, and since when it waits.
        self._partial = {False: bytearray(), True: bytearray()}
        self._since: dict[bool, float] = {}
        self._tail = bytearray()
        self._sent = 0
        # Nothing is sent before `begin` says where the job's log ends (a retried job's log
        # already holds its earlier attempts).
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="log-shipper", daemon=True)
        self._thread.start()

    def write(self, data: bytes, *, stderr: bool = False) -> None:
        """Output of the job's stdout (and the runner's own), or of its stderr."""
        with self._lock:
            partial = self._partial[stderr]
            partial += data
            end = partial.rfind(b"\n") + 1
            if end == 0 and len(partial) >= MAX_PIECE:
                end = len(partial)  # no line end in sight: not held any longer
            if end:
                self._take(partial[:end], stderr)
                del partial[:end]
                self._since.pop(stderr, None)
            if partial:
                self._since.setdefault(stderr, time.monotonic())
        if len(self._buffer) >= MAX_PIECE:
            self._wake.set()

    def end_line(self, *, stderr: bool = False) -> None:
        """Let out what waits of the stream's last line (at the stream's end)."""
        with self._lock:
            self._take_partial(stderr)

    def _take_partial(self, stderr: bool) -> None:
        partial = self._partial[stderr]
        self._take(partial, stderr)
        partial.clear()
        self._since.pop(stderr, None)

    def _take(self, data: bytes | bytearray, stderr: bool) -> None:
        """Into the buffer to send (the lock held)."""
        if stderr:
            start = self._base + len(self._buffer)
            log_ranges.add(self._stderr, start, start + len(data))
        self._buffer += data
        self._tail += data
        del self._tail[:-TAIL_BYTES]

    def tail(self) -> str:
        """The last :data:`TAIL_BYTES` of everything written, decoded."""
        with self._lock:
            return self._tail.decode(errors="replace")

    def say(self, line: str) -> None:
        """A line from the runner itself, marked so it stands out from the job's own output;
        never inside a line of the job's that waits for its end."""
        with self._lock:
            self._take(f"[flowyard] {line}\n".encode(), stderr=False)
        if len(self._buffer) >= MAX_PIECE:
            self._wake.set()

    def begin(self, offset: int) -> None:
        """Start sending, appending at ``offset``."""
        self._sent = offset
        self._started.set()

    def _send_pending(self, waited: float = 0.0) -> None:
        """Send the buffer, with the lines not ended that have waited ``waited`` seconds."""
        if not self._started.is_set():
            return
        with self._lock:
            now = time.monotonic()
            for stderr, since in list(self._since.items()):
                if now - since >= waited:
                    self._take_partial(stderr)
        while True:
            with self._lock:
                size, ranges = log_ranges.piece(
                    self._stderr, self._base, min(MAX_PIECE, len(self._buffer))
                )
                piece = bytes(self._buffer[:size])
            if not piece:
                return
            self._append(self._sent, piece, ranges)
            with self._lock:
                del self._buffer[:size]
                self._base += size
                log_ranges.drop(self._stderr, self._base)
                self._sent += size

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self._send_pending(waited=FLUSH_INTERVAL_S)
            except Exception:
                # The append already retried with back-off; keep the bytes and try again later.
                continue

    def close(self) -> None:
        """Send everything still buffered, lines not ended included (retrying as ``append``
        does), then stop."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._send_pending()
