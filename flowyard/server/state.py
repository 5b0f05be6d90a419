"""What every request handler shares within one server process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from flowyard.server.auth.tokens import Keys
from flowyard.server.middleware.auth import Sessions
from flowyard.server.services.dispatch import Dispatcher
from flowyard.server.services.sweeps import SweepController
from flowyard.server.services.watch import JobWatch
from flowyard.server.settings import ServerSettings


@dataclass
class AppState:
    settings: ServerSettings
    engine: Engine
    dispatcher: Dispatcher
    sweeps: SweepController
    keys: Keys
    sessions: Sessions
    watch: JobWatch

    @staticmethod
    def of(request: Request) -> AppState:
        state: AppState = request.app.state.flowyard
        return state


def _session(request: Request) -> Iterator[Session]:
    with Session(AppState.of(request).engine, expire_on_commit=False) as session:
        yield session


DbSession = Annotated[Session, Depends(_session)]
"""A request's database session; commit explicitly where the handler changes something."""

State = Annotated[AppState, Depends(AppState.of)]
