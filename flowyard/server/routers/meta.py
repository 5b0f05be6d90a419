"""What a workspace is and whether it is well: the calls clients use to recognise one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from flowyard import __version__, defaults
from flowyard.server.db.models import utc_now
from flowyard.server.services import replicas, storage
from flowyard.server.state import AppState, DbSession

router = APIRouter(tags=["workspace"])

CAPABILITIES = ["mlflow-tracking", "mlflow-artifacts", "mlflow-ui"]


@router.get("/info")
def info(request: Request, session: DbSession) -> dict[str, Any]:
    """The workspace's name and version (``service: flowyard`` marks a Flowyard workspace), the
    URL its runners are given, and its replicas seen serving within a heartbeat timeout."""
    import mlflow

    state = AppState.of(request)
    since = utc_now() - timedelta(seconds=state.settings.heartbeat_timeout_s)
    return {
        "service": "flowyard",
        "workspace": state.settings.workspace_name,
        "version": __version__,
        "mlflow_version": mlflow.__version__,
        "capabilities": CAPABILITIES,
        "runners_url": state.settings.runners_url,
        "replicas": replicas.seen_since(session, since),
    }


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when the database answers, with how full the disks of the database and the artifact
    store are, and a warning for each fuller than the server's ``--disk-warn-percent``; 503
    naming what is down (the database) and why when it does not answer, with ``Retry-After``."""
    state = AppState.of(request)

    def ping() -> None:
        with state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except sa.exc.SQLAlchemyError as e:
        return JSONResponse(
            {"status": "unhealthy", "down": ["database"], "database": str(e).splitlines()[0]},
            status_code=503,
            headers={"Retry-After": str(defaults.RETRY_AFTER_S)},
        )
    shown, warnings = await run_in_threadpool(storage.report, state.settings)
    # Still 200: the workspace serves; the warnings say what will stop it soon.
    return JSONResponse(
        {
            "status": "warning" if warnings else "ok",
            "database": "ok",
            "disks": shown,
            "warnings": warnings,
        }
    )
