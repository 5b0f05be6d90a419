"""What every request handler shares within one server process."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.engine import Engine

from flowyard.server.settings import ServerSettings


@dataclass
class AppState:
    settings: ServerSettings
    engine: Engine

    @staticmethod
    def of(request: Request) -> AppState:
        state: AppState = request.app.state.flowyard
        return state
