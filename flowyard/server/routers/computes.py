"""The compute registry over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Response

from flowyard import defaults
from flowyard.schemas import ComputeCreate, ComputeList, ComputeOut, ComputeUpdate
from flowyard.server.services import computes
from flowyard.server.state import DbSession

router = APIRouter(prefix="/computes", tags=["computes"])


@router.get("")
def list_computes(session: DbSession) -> ComputeList:
    counts = computes.counts(session)
    found = [computes.out(c, counts.get(c.name)) for c in computes.all_computes(session)]
    return ComputeList(computes=found)


@router.post("", status_code=201)
def create(body: ComputeCreate, session: DbSession) -> ComputeOut:
    return computes.out(computes.create(session, body))


@router.get("/{name}")
def show(name: str, session: DbSession, health: bool = False) -> ComputeOut:
    """The compute, with its last health check; ``health=true`` asks for a new one and waits
    for it briefly, never as long as a compute that hangs."""
    count = computes.counts(session).get(name)
    if name == computes.LOCAL:
        return computes.out_local(count)
    compute = computes.get(session, name)
    wait = defaults.HEALTH_WAIT_S if health else 0.0
    return computes.out(compute, count, health_wait=wait)


@router.patch("/{name}")
def update(name: str, body: ComputeUpdate, session: DbSession) -> ComputeOut:
    return computes.out(computes.update(session, name, body))


@router.delete("/{name}", status_code=204)
def delete(name: str, session: DbSession) -> Response:
    computes.delete(session, name)
    return Response(status_code=204)
