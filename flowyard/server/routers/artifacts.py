"""A job's artifacts, as the studio's Artifacts tab reads them: all of them listed in one call,
and the first bytes of one for a preview. The whole file downloads through MLflow's own
``/get-artifact``.

The preview's bytes are the run's, so hostile: they are served as the security headers serve any
raw content (``Content-Security-Policy: sandbox``, script-capable types as plain text or a
download; see :mod:`flowyard.server.middleware.headers`).
"""

from __future__ import annotations

import mimetypes
from typing import Any

from fastapi import APIRouter, Query, Response

from flowyard.errors import InvalidRequestError
from flowyard.server.middleware.artifact_paths import artifact_path_problem
from flowyard.server.services import artifacts
from flowyard.server.services import jobs as job_service
from flowyard.server.state import DbSession, State

router = APIRouter(prefix="/jobs", tags=["artifacts"])

SIZE_HEADER = "X-Flowyard-Artifact-Size"
# A preview's default length: enough to read a table's head or a log's start.
DEFAULT_HEAD = 64 * 1024


@router.get("/{job_id}/artifacts")
def list_artifacts(job_id: str, session: DbSession, state: State) -> dict[str, Any]:
    """Every file of the job's run's artifacts and of the models it logged, with sizes."""
    job = job_service.get(session, job_id)
    found = artifacts.listing(state.settings, job.id, job.experiment_id)
    return {
        "files": [{"path": f.path, "size": f.size, "model": f.model} for f in found.files],
        "models": [{"id": k, "name": v} for k, v in found.models.items()],
        "cut": found.cut,
        "max_files": artifacts.MAX_FILES,
    }


@router.get("/{job_id}/artifacts/{path:path}")
def artifact_head(
    job_id: str,
    path: str,
    session: DbSession,
    state: State,
    limit: int = Query(DEFAULT_HEAD, ge=1, le=artifacts.MAX_HEAD),
    model: str | None = None,
) -> Response:
    """The first ``limit`` bytes of an artifact (of a logged model's with ``model``); the whole
    size in ``X-Flowyard-Artifact-Size``."""
    if problem := artifact_path_problem("GET", path, in_run=True):
        raise InvalidRequestError(problem[1])
    job = job_service.get(session, job_id)
    data, size = artifacts.head(state.settings, job.id, job.experiment_id, path, limit, model)
    kind = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind == "application/json":
        kind += "; charset=utf-8"
    name = path.rsplit("/", 1)[-1].replace('"', "")
    return Response(
        data,
        media_type=kind,
        headers={
            SIZE_HEADER: str(size),
            "Content-Disposition": f'inline; filename="{name.encode("ascii", "replace").decode()}"',
            "Cache-Control": "no-store",
        },
    )
