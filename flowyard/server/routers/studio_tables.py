"""The studio's experiment pages: the workspace's experiments, and one experiment's runs as a
table filtered and sorted by MLflow's own search (see ``services/experiment_table.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from flowyard.errors import NotFoundError
from flowyard.server.routers.studio import PREFIX, _page, not_found, templates
from flowyard.server.services import experiment_table as service
from flowyard.server.state import DbSession

router = APIRouter(prefix=PREFIX, include_in_schema=False)
templates.env.filters.update(human_duration=service.human_duration)


@router.get("/experiments")
def experiments_page(request: Request, session: DbSession) -> Response:
    return _page(request, "experiments.html", experiments=service.experiments(session))


@router.get("/experiments/{experiment_id}")
def experiment_page(
    experiment_id: str,
    request: Request,
    session: DbSession,
    filter: str = "",
    name: str = "",
    sort: str = service.DEFAULT_SORT,
    order: str = "desc",
    page: int = Query(1, ge=1),
    token: str = "",
) -> Response:
    q = service.TableQuery(
        filter=filter, name=name, sort=sort, desc=order != "asc", page=page, token=token
    )
    try:
        found = service.table(session, experiment_id, q)
    except NotFoundError as e:
        return not_found(request, e.message)
    return _page(
        request,
        "experiment.html",
        status_code=400 if found.error else 200,
        t=found,
        q=q,
        attributes=service.ATTRIBUTES,
        example=service.EXAMPLE,
    )
