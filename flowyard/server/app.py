"""The ASGI app: Flowyard's API under its prefix, MLflow's whole server app on everything else."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from flowyard import __version__, defaults
from flowyard.errors import FlowyardError, InvalidRequestError
from flowyard.paths import config_dir
from flowyard.schemas import ERROR_RESPONSES
from flowyard.server import mlflow_internals
from flowyard.server.auth.tokens import Keys, load_key_file
from flowyard.server.db.engine import make_engine, parse_db_url, tune_sqlite_everywhere
from flowyard.server.middleware.artifact_paths import ArtifactPathGuard
from flowyard.server.middleware.auth import AuthMiddleware, Sessions
from flowyard.server.middleware.headers import SecurityHeaders
from flowyard.server.middleware.inputs import InputGuard, JsonServerErrors
from flowyard.server.middleware.limits import BodyLimits
from flowyard.server.middleware.outages import DatabaseOutages
from flowyard.server.middleware.store_space import StoreSpace
from flowyard.server.routers import (
    artifacts,
    auth,
    computes,
    experiments,
    gc,
    jobs,
    meta,
    retention,
    snapshots,
    studio,
    studio_logs,
    studio_tables,
    sweeps,
)
from flowyard.server.services.dispatch import Dispatcher
from flowyard.server.services.gc import Collector
from flowyard.server.services.sweeps import SweepController
from flowyard.server.services.watch import JobWatch
from flowyard.server.settings import ServerSettings
from flowyard.server.state import AppState
from flowyard.server.validation import describe


def configure_mlflow(settings: ServerSettings) -> None:
    """Point MLflow's server app at the workspace's stores; must run before it is imported."""
    mlflow_internals.configure_server_app(settings.db_url, settings.artifacts_destination)
    # MLflow's GenAI job runner (Huey consumers) is not Flowyard's business; keep it off unless
    # the operator turns it on in the environment.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")


async def _flowyard_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FlowyardError)
    return JSONResponse(exc.to_payload(), status_code=exc.http_status)


_HTTP_CODES = {400: "INVALID_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's own refusals (a body that is not JSON, a method a route lacks) in Flowyard's
    error shape on its API, so every error there reads the same."""
    assert isinstance(exc, StarletteHTTPException)
    if not request.url.path.startswith(defaults.API_PREFIX):
        return await http_exception_handler(request, exc)
    message = str(exc.detail)
    if exc.status_code == 400 and "parsing the body" in message:
        message = "The request body is not valid JSON; send the JSON object the API describes."
    code = _HTTP_CODES.get(exc.status_code, f"HTTP_{exc.status_code}")
    return JSONResponse(
        {"error_code": code, "message": message}, status_code=exc.status_code, headers=exc.headers
    )


async def _validation_error(request: Request, exc: Exception) -> Response:
    """A request that does not fit its model: which field, which rule, and the fix, on
    Flowyard's API and the studio alike."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(
        {"error_code": InvalidRequestError.code, "message": describe(exc.errors())},
        status_code=422,
    )


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """Build the app; without ``settings`` they come from ``$FLOWYARD_SERVER_SETTINGS``."""
    settings = settings or ServerSettings.from_env()
    configure_mlflow(settings)
    tune_sqlite_everywhere()
    mlflow_app = mlflow_internals.server_app()

    engine = make_engine(parse_db_url(settings.db_url))
    keys = Keys(load_key_file(Path(settings.secret_key_file or config_dir() / "secret.key")))
    dispatcher = Dispatcher(engine, settings, keys)
    collector = Collector(engine, settings)
    watch = JobWatch()
    sweep_controller = SweepController(
        engine, settings, wake_dispatcher=dispatcher.wake, changed=watch.changed, keys=keys
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # MLflow's own lifespan only reaps its GenAI assistant's Docker sandboxes, which
        # Flowyard does not run, so it is not entered here.
        dispatcher.start()
        collector.start()
        sweep_controller.start()
        yield
        sweep_controller.stop()
        collector.stop()
        dispatcher.stop()
        engine.dispose()

    app = FastAPI(
        title="Flowyard",
        version=__version__,
        openapi_url=f"{defaults.API_PREFIX}/openapi.json",
        docs_url=f"{defaults.API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    sessions = Sessions(keys, settings.port)
    app.state.flowyard = AppState(
        settings=settings,
        engine=engine,
        dispatcher=dispatcher,
        sweeps=sweep_controller,
        keys=keys,
        sessions=sessions,
        watch=watch,
    )
    app.add_exception_handler(FlowyardError, _flowyard_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    # The last added runs first: security headers (on every answer, refusals included), a
    # database outage as a 503 (whichever layer met it, the token lookup included), who is
    # asking, then sizes, then paths, then what a JSON body holds. Every request, MLflow's
    # included, is checked before any route sees it.
    # Innermost, so a full disk's error reaches it as it was raised; inside the path guard, so
    # an upload's path is checked before a full store looks at it.
    app.add_middleware(StoreSpace, destination=settings.artifacts_destination)
    app.add_middleware(JsonServerErrors)
    app.add_middleware(InputGuard)
    app.add_middleware(ArtifactPathGuard)
    # Sizes before paths: the path guard reads some bodies (experiments/create, model-versions/
    # create), which must be bounded first.
    app.add_middleware(BodyLimits, settings=settings)
    app.add_middleware(
        AuthMiddleware, engine=engine, keys=keys, sessions=sessions, enabled=settings.auth
    )
    app.add_middleware(DatabaseOutages)
    app.add_middleware(SecurityHeaders)
    for module in (
        meta,
        snapshots,
        jobs,
        artifacts,
        sweeps,
        experiments,
        computes,
        auth,
        gc,
        retention,
    ):
        app.include_router(module.router, prefix=defaults.API_PREFIX, responses=ERROR_RESPONSES)
    # The studio's assets before its pages, whose catch-all answers unknown studio paths with 404.
    assets = studio.StudioAssets(directory=studio.STATIC_DIR)
    app.mount(f"{studio.PREFIX}/static", assets, name="studio")
    app.include_router(studio_tables.router)  # before the studio's catch-all
    app.include_router(studio_logs.router)
    app.include_router(studio.router)
    app.include_router(studio.icon_router)
    # Last, so Flowyard's routes win: MLflow's REST API, artifact proxy and UI.
    app.mount("/", mlflow_app)
    return app
