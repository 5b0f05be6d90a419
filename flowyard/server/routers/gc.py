"""Garbage collection on demand (the server also collects on a schedule)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from flowyard.schemas import GcOut
from flowyard.server.services import gc
from flowyard.server.state import State

router = APIRouter(tags=["workspace"])


@router.post("/gc")
async def collect(state: State, dry_run: bool = False) -> GcOut:
    """Collect now: snapshots no job refers to and blobs no snapshot refers to (once unused for
    the grace period), the folders of ended jobs on the server's host, and its blob cache past
    its bound. ``dry_run`` counts what would go and removes nothing."""
    done = await run_in_threadpool(gc.collect, state.engine, state.settings, dry_run=dry_run)
    return GcOut(**asdict(done))
