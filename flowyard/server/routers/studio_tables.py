"""The studio's experiment pages: the workspace's experiments, and one experiment's runs as a
table filtered and sorted by MLflow's own search (see ``services/experiment_table.py``)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from flowyard.errors import InvalidRequestError, NotFoundError
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
) -> Response:
    q = service.TableQuery(filter=filter, name=name, sort=sort, desc=order != "asc", page=page)
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


@router.get("/experiments/{experiment_id}/ranges")
def experiment_ranges(
    experiment_id: str, request: Request, filter: str = "", name: str = ""
) -> Response:
    """The table's "min" and "max" rows over every run the filter selects: asked for by the page
    once its rows are shown (the aggregate takes longer than a page at 20,000 runs)."""
    q = service.TableQuery(filter=filter, name=name)
    try:
        stats = service.ranges(experiment_id, q)
    except NotFoundError as e:
        return not_found(request, e.message)
    except InvalidRequestError as e:
        return PlainTextResponse(e.message, status_code=400)
    return _page(request, "_experiment_ranges.html", stats=stats, q=q)
