"""Shipping a job's log to the workspace in offset-addressed pieces while it runs."""

from __future__ import annotations

import threading
from collections.abc import Callable

# Small enough that one append is quick, large enough that a chatty job needs few requests.
MAX_PIECE = 256 * 1024
# How long output may wait before it is sent: the live log lags the job by about this much.
FLUSH_INTERVAL_S = 0.2
# The end of the log the runner keeps to read the job's error from (a traceback's last frames):
# bounded in memory, so a job printing gigabytes costs the runner's host neither disk nor memory.
TAIL_BYTES = 64 * 1024


class LogShipper:
    """Collects output, keeps its tail, and sends it in order to ``append(offset, data)``.

    ``append`` must be idempotent for one offset (the workspace's log append is) and may raise;
    a failed piece is retried from the same offset, so nothing is lost or duplicated.
    """

    def __init__(self, append: Callable[[int, bytes], int]) -> None:
        self._append = append
        self._buffer = bytearray()
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

    def write(self, data: bytes) -> None:
        with self._lock:
            self._buffer += data
            self._tail += data
            del self._tail[:-TAIL_BYTES]
        if len(self._buffer) >= MAX_PIECE:
            self._wake.set()

    def tail(self) -> str:
        """The last :data:`TAIL_BYTES` of everything written, decoded."""
        with self._lock:
            return self._tail.decode(errors="replace")

    def say(self, line: str) -> None:
        """A line from the runner itself, marked so it stands out from the job's own output."""
        self.write(f"[flowyard] {line}\n".encode())

    def begin(self, offset: int) -> None:
        """Start sending, appending at ``offset``."""
        self._sent = offset
        self._started.set()

    def _send_pending(self) -> None:
        if not self._started.is_set():
            return
        while True:
            with self._lock:
                piece = bytes(self._buffer[:MAX_PIECE])
            if not piece:
                return
            self._append(self._sent, piece)
            with self._lock:
                del self._buffer[: len(piece)]
                self._sent += len(piece)

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL_S)
            self._wake.clear()
            try:
                self._send_pending()
            except Exception:
                # The append already retried with back-off; keep the bytes and try again later.
                continue

    def close(self) -> None:
        """Send everything still buffered (retrying as ``append`` does), then stop."""
        self._closed = True
        self._wake.set()
        self._thread.join()
        self._send_pending()
