"""Waiting for a job to change: what lets a follower's request return the moment a job ends.

A request that waits is woken by changes made through this server process; changes made through
another process on the same database (replicas, `--workers N`) are seen when the waiter reads the
database again, every :data:`RECHECK_S` at most. Waiting holds no database connection and no
worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

# How stale a waiter's view may get when the change comes through another server process.
RECHECK_S = 0.25


class JobWatch:
    """Who waits on which job within one server process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}

    def changed(self, job_id: str) -> None:
        """``job_id``'s status or log changed (committed); safe to call from any thread."""
        with self._lock:
            waiters = list(self._waiters.get(job_id, ()))
        for waiter in waiters:
            try:
                waiter.loop.call_soon_threadsafe(waiter.event.set)
            except RuntimeError:
                continue  # that loop has closed: its waiter is gone too

    @asynccontextmanager
    async def watching(self, job_id: str) -> AsyncIterator[Waiter]:
        """A waiter on ``job_id`` for the block. Register before reading the job, so that no
        change slips in between the read and the wait."""
        waiter = Waiter(asyncio.get_running_loop())
        with self._lock:
            self._waiters.setdefault(job_id, set()).add(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                mine = self._waiters.get(job_id)
                if mine is not None:
                    mine.discard(waiter)
                    if not mine:
                        del self._waiters[job_id]


class Waiter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.event = asyncio.Event()

    async def sleep(self, timeout: float) -> None:
        """Until the job changes (since the last sleep) or ``timeout`` passes."""
        with suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()
