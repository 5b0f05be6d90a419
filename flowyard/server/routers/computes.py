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
    """Every compute, ``local`` (which every workspace has) first."""
    return ComputeList(computes=computes.listing(session))


@router.post("", status_code=201)
def create(body: ComputeCreate, session: DbSession) -> ComputeOut:
    return computes.out(computes.create(session, body))


@router.get("/{name}")
def show(name: str, session: DbSession, health: bool = False) -> ComputeOut:
    """The compute, with its last health check; ``health=true`` asks for a new one and waits
    for it briefly, never as long as a compute that hangs."""
    return computes.shown(session, name, health_wait=defaults.HEALTH_WAIT_S if health else 0.0)


@router.patch("/{name}")
def update(name: str, body: ComputeUpdate, session: DbSession) -> ComputeOut:
    return computes.out(computes.update(session, name, body))


@router.delete("/{name}", status_code=204)
def delete(name: str, session: DbSession) -> Response:
    computes.delete(session, name)
    return Response(status_code=204)
