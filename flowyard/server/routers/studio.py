"""The studio: server-rendered pages for jobs, logs, metrics, outputs, snapshots and computes.

Pages read the database directly (see ``services/studio.py``); what changes while a job runs
(status, log tail, metric histories, outputs) is fetched by the pages' scripts from the JSON APIs
that already exist: Flowyard's under ``/api/flowyard/v1`` and MLflow's own.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import cookie_parser
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from flowyard import defaults
from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.schemas import JobStatus
from flowyard.server import mlflow_internals
from flowyard.server.auth.tokens import Role
from flowyard.server.middleware.auth import CSRF, CSRF_HEADER, PRINCIPAL, SESSION_MAX_AGE_S
from flowyard.server.routers import studio_logs
from flowyard.server.services import auth as auth_service
from flowyard.server.services import compare_set, studio
from flowyard.server.services import computes as compute_service
from flowyard.server.services import jobs as job_service
from flowyard.server.services import metric_history as metric_history_service
from flowyard.server.services import snapshots as snapshot_service
from flowyard.server.services import sweep_page as sweep_page_service
from flowyard.server.services import sweeps as sweep_service
from flowyard.server.services.auth import Principal
from flowyard.server.services.reruns import chain as rerun_chain
from flowyard.server.services.reruns import form as rerun_form
from flowyard.server.state import DbSession, State

PREFIX = "/studio"
STATIC_DIR = Path(__file__).resolve().parents[1] / "studio" / "static"


def _assets_version() -> str:
    """A digest of the studio's assets (200 KB, read once): every page links them with it, so a
    browser keeps each for good and asks again only once one has changed."""
    digest = hashlib.sha256()
    for path in sorted(p for p in STATIC_DIR.rglob("*") if p.is_file()):
        digest.update(path.relative_to(STATIC_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


ASSETS_VERSION = _assets_version()


class StudioAssets(StaticFiles):
    """The studio's scripts, styles and icons. Asked for at the current version (as every page
    links them), an answer is kept a year without asking again; else it is checked each time."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        current = ("v", ASSETS_VERSION) in parse_qsl(scope["query_string"].decode("latin-1"))
        response.headers["Cache-Control"] = (
            "public, max-age=31536000, immutable" if current else "no-cache"
        )
        return response


# Past this size a snapshot file is offered for download rather than highlighted in the page.
MAX_VIEW_BYTES = 512 * 1024

# Failed sign-ins allowed per client address: enough for typos, too few to guess a token with.
# Counted in this server process's memory, so each replica counts its own.
SIGN_IN_ATTEMPTS = parse("10/minute")
_failed_sign_ins = MovingWindowRateLimiter(MemoryStorage())

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# Outside the studio's prefix: what a browser asks every site for, on its own and signed out.
icon_router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "studio" / "templates")


def _duration(job: Any) -> str:
    start = studio.utc(job.started_at)
    if start is None:
        return ""
    end = studio.utc(job.ended_at) or datetime.now(UTC)
    seconds = int((end - start).total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def _took(start: datetime | None, end: datetime | None) -> str:
    """How long a step of the timeline took: from its event to the next one."""
    begin, finish = studio.utc(start), studio.utc(end)
    if begin is None or finish is None:
        return ""
    seconds = max(0.0, (finish - begin).total_seconds())
    if seconds < 60:
        return f"{round(seconds, 1):g} s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {rest:02d}s"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError


def _iso(at: datetime | None) -> str:
    moment = studio.utc(at)
    return moment.isoformat(timespec="seconds") if moment else ""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


templates.env.filters.update(duration=_duration, size=_size, iso=_iso, number=_number, took=_took)
templates.env.globals.update(
    prefix=PREFIX,
    api=defaults.API_PREFIX,
    version=ASSETS_VERSION,
    final={s.value for s in JobStatus if s.is_final},
)


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    principal = request.scope.get(PRINCIPAL)
    context.setdefault("csrf", request.scope.get(CSRF, ""))
    context.setdefault("signed_in", principal.label if principal and CSRF in request.scope else "")
    # Deleting is an owner's (the API refuses anyone else): others are not offered the button.
    context.setdefault("owner", principal is None or principal.role >= Role.OWNER)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def not_found(request: Request, message: str) -> Response:
    return _page(request, "404.html", status_code=404, message=message)


@router.get("")
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/jobs")


@router.get("/jobs")
def jobs_list(
    request: Request,
    session: DbSession,
    status: str | None = None,
    compute: str | None = None,
    experiment: str | None = None,
    user: str | None = None,
    sort: str = "submitted",
    order: str = "desc",
    page: int = Query(1, ge=1),
    fragment: bool = False,
) -> Response:
    filters = studio.JobFilters(
        status=status or None,
        compute=compute or None,
        experiment=experiment or None,
        user=user or None,
        sort=sort if sort in studio.SORTS else "submitted",
        desc=order != "asc",
        page=page,
    )
    found = studio.jobs_page(session, filters, with_options=not fragment)
    name = "_jobs_table.html" if fragment else "jobs.html"
    return _page(request, name, filters=filters, found=found)


@router.get("/jobs/{job_id}")
def job_page(job_id: str, request: Request, session: DbSession, state: State) -> Response:
    try:
        detail = studio.job_detail(session, job_id)
    except NotFoundError as e:
        return not_found(request, e.message)
    tree = studio.snapshot_tree(detail.snapshot.manifest) if detail.snapshot else {}
    waiting = job_service.waiting_reason(session, detail.job)
    return _page(
        request,
        "job.html",
        d=detail,
        job=detail.job,
        tree=tree,
        waiting=waiting,
        triage=studio_logs.triage(session, detail.job, detail.job.events),
        chain=rerun_chain(session, job_id),
        may_rerun=_may_rerun(request),
        rerun=rerun_form(session, detail.job, _rerun_by(request, state, detail.job.user))
        if detail.rerunnable
        else None,
    )


def _may_rerun(request: Request) -> bool:
    """Whether the signed-in user may re-run (a contributor); the API refuses anyone else."""
    principal = request.scope.get(PRINCIPAL)
    return principal is None or principal.role >= Role.CONTRIBUTOR


def _rerun_by(request: Request, state: State, submitter: str) -> str:
    """Who a re-run from this page would be by: the signed-in user (the submitter where the
    workspace has no users), as the re-run API decides."""
    principal = request.scope.get(PRINCIPAL)
    return principal.user if state.settings.auth and principal is not None else submitter


@router.get("/sweeps/{sweep_id}")
def sweep_page(sweep_id: str, request: Request, session: DbSession, state: State) -> Response:
    """A sweep: its progress, the best so far, its trials as parallel coordinates and as a
    table, best first, each with why it ended."""
    try:
        sweep, job = sweep_service.get(session, sweep_id)
    except NotFoundError as e:
        return not_found(request, e.message)
    trials = sweep_service.trials(session, state.settings, sweep)
    return _page(
        request,
        "sweep.html",
        job=job,
        spec=sweep.spec,
        trials=trials,
        best=next((t for t in trials if t.run_id == sweep.best_trial_id), None),
        page=sweep_page_service.build(sweep.spec, trials, sweep.best_trial_id),
        run_name=mlflow_internals.run_name(session, job.id),
        width=sweep_page_service.WIDTH,
        height=sweep_page_service.HEIGHT,
        pad=sweep_page_service.PAD,
    )


@router.get("/jobs/{job_id}/log.txt")
def log_download(job_id: str, request: Request, session: DbSession, state: State) -> Response:
    """The log as it stands now, streamed a page at a time."""
    try:
        size = job_service.get(session, job_id).log_size
    except NotFoundError as e:
        return not_found(request, e.message)

    def pages() -> Iterator[bytes]:
        # A session for each page: a slow download holds no database connection between pages.
        offset = 0
        while offset < size:
            with Session(state.engine) as own:
                page = job_service.read_log(own, job_id, offset, size - offset)
            if not page:
                return
            offset += len(page)
            yield page

    return StreamingResponse(
        pages(),
        media_type="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{job_id}-std_log.txt"',
            "Content-Length": str(size),
        },
    )


@router.get("/jobs/{job_id}/snapshot.zip")
def snapshot_zip(job_id: str, request: Request, session: DbSession, state: State) -> Response:
    """The job's code as a zip, assembled from the snapshot's blobs in a temporary file."""
    try:
        job = job_service.get(session, job_id)
        snapshot = snapshot_service.get_snapshot(session, job.snapshot_id)
    except NotFoundError as e:
        return not_found(request, e.message)
    folder = Path(tempfile.mkdtemp(prefix="flowyard-zip-"))
    try:
        archive = folder / f"{job_id}-snapshot.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in snapshot.manifest:
                blob = snapshot_service.open_blob(
                    session, state.settings.artifacts_destination, entry["digest"]
                )
                try:
                    info = zipfile.ZipInfo.from_file(blob.path, entry["path"])
                    # Keep the executable bit the manifest recorded; blobs are stored plain.
                    info.external_attr = (0o755 if entry.get("executable") else 0o644) << 16
                    info.compress_type = zipfile.ZIP_DEFLATED
                    with blob.path.open("rb") as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst)
                finally:
                    if blob.temp_dir:
                        shutil.rmtree(blob.temp_dir, ignore_errors=True)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=archive.name,
        background=BackgroundTask(shutil.rmtree, folder, True),
    )


@router.get("/jobs/{job_id}/snapshot/{path:path}")
def snapshot_file(
    job_id: str, path: str, request: Request, session: DbSession, state: State
) -> Response:
    try:
        job = job_service.get(session, job_id)
        snapshot = snapshot_service.get_snapshot(session, job.snapshot_id)
        entry = snapshot_service.snapshot_file(snapshot, path)
    except NotFoundError as e:
        return not_found(request, e.message)
    html = None
    if entry.size <= MAX_VIEW_BYTES:
        blob = snapshot_service.open_blob(
            session, state.settings.artifacts_destination, entry.digest
        )
        try:
            html = _highlight(path, blob.path.read_bytes())
        finally:
            if blob.temp_dir:
                shutil.rmtree(blob.temp_dir, ignore_errors=True)
    raw = f"{defaults.API_PREFIX}/snapshots/{snapshot.id}/files/{path}"
    return _page(request, "snapshot_file.html", job=job, path=path, entry=entry, html=html, raw=raw)


def _highlight(path: str, data: bytes) -> str | None:
    """The file as highlighted HTML (Pygments, on the server: no script needed to read code);
    None for binary content."""
    from markupsafe import Markup

    # Pygments ships no type hints (and the dev extra has no stubs for it).
    from pygments import highlight  # type: ignore[import-untyped]
    from pygments.formatters import HtmlFormatter  # type: ignore[import-untyped]
    from pygments.lexer import Lexer  # type: ignore[import-untyped]
    from pygments.lexers import TextLexer, YamlLexer, guess_lexer_for_filename  # type: ignore[import-untyped]
    from pygments.util import ClassNotFound  # type: ignore[import-untyped]

    if b"\0" in data[:8192]:
        return None
    text = data.decode("utf-8", errors="replace")
    lexer: Lexer
    if Path(path).name.lower() == "mlproject":  # YAML without the extension
        lexer = YamlLexer()
    else:
        try:
            lexer = guess_lexer_for_filename(path, text)
        except ClassNotFound:
            lexer = TextLexer()
    formatter = HtmlFormatter(linenos="table", cssclass="code", anchorlinenos=True, lineanchors="L")
    return Markup(highlight(text, lexer, formatter))


@router.get("/metric-history")
def metric_history(
    request: Request,
    session: DbSession,
    run: Annotated[list[str] | None, Query()] = None,
    key: Annotated[list[str] | None, Query()] = None,
    points: int = metric_history_service.DEFAULT_POINTS,
    system: bool | None = None,
    since: int | None = None,
) -> Response:
    """The charts' data: every metric of the runs, sampled by the database, in one answer (see
    services/metric_history.py)."""
    query = metric_history_service.Query(
        run_ids=run or [], points=points, system=system, keys=tuple(key or ()), since_ms=since
    )
    accepts = request.headers.get("accept-encoding", "")
    data, headers = metric_history_service.answer(session, query, accepts)
    return Response(data, media_type="application/json", headers=headers)


@router.get("/compare")
def compare(
    request: Request,
    session: DbSession,
    state: State,
    ids: Annotated[list[str] | None, Query()] = None,
    sweep: str = "",
    experiment: str = "",
    filter: str = "",
) -> Response:
    """Runs side by side: picked ids, a sweep's trials, or an MLflow search over an
    experiment (see services/compare_set.py)."""
    # One "a,b,c" value or repeated ids=a&ids=b: links and the jobs table's form both work.
    wanted = [i for raw in ids or [] for i in raw.split(",") if i.strip()]
    ask = compare_set.Ask(wanted, sweep or None, experiment or None, filter)
    experiments = sorted(
        mlflow_internals.experiment_names(session).items(), key=lambda kv: kv[1].lower()
    )
    context: dict[str, Any] = {"ask": ask, "experiments": experiments, "found": None, "error": ""}
    if len(wanted) < 2 and not sweep and not experiment:
        return _page(request, "compare.html", **context)
    try:
        context["found"] = compare_set.resolve(session, state.settings, ask)
    except NotFoundError as e:
        return not_found(request, e.message)
    except InvalidRequestError as e:
        return _page(request, "compare.html", status_code=400, **{**context, "error": e.message})
    return _page(request, "compare.html", **context)


@router.get("/computes")
def computes_page(request: Request, session: DbSession) -> Response:
    return _page(request, "computes.html", computes=compute_service.listing(session))


@router.get("/login")
def login_page(request: Request, next: str = f"{PREFIX}/jobs") -> Response:
    return _page(request, "login.html", next=_local(next), error="")


@router.post("/login")
async def login(request: Request, state: State) -> Response:
    """Sign in with a token: a session cookie (HttpOnly, SameSite=Lax) that keeps the token's
    id, never the token, and lasts while the token does, 12 hours at most."""
    form = dict(parse_qsl((await request.body()).decode(errors="replace")))
    target = _local(form.get("next", ""))
    raw = form.get("token", "").strip()
    client = request.client.host if request.client else ""
    if not _failed_sign_ins.test(SIGN_IN_ATTEMPTS, client):
        reset = _failed_sign_ins.get_window_stats(SIGN_IN_ATTEMPTS, client).reset_time
        wait = max(1, int(reset - datetime.now(UTC).timestamp()) + 1)
        response = _page(
            request,
            "login.html",
            status_code=429,
            next=target,
            error=f"Too many failed sign-ins from your address; wait {wait} s and try again.",
        )
        response.headers["Retry-After"] = str(wait)
        return response

    def check() -> Principal | None:
        with Session(state.engine) as session:
            found = auth_service.resolve(session, state.keys, raw) if raw else None
        return found if found is not None and found.job is None else None

    principal = await run_in_threadpool(check)
    if principal is None or principal.token_id is None:
        _failed_sign_ins.hit(SIGN_IN_ATTEMPTS, client)
        return _page(
            request,
            "login.html",
            status_code=401,
            next=target,
            error="That token is unknown, expired or revoked; ask a workspace owner for one.",
        )
    cookie, _csrf = state.sessions.issue(principal.token_id)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        state.sessions.cookie,
        cookie,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    """Sign out; only with the session's CSRF token (the sign-out form's hidden field, or the
    header), so another site cannot sign a user out with a form of its own."""
    cookie = cookie_parser(request.headers.get("cookie", "")).get(state.sessions.cookie, "")
    session = state.sessions.read(cookie) if cookie else None
    if session is not None:
        form = dict(parse_qsl((await request.body()).decode(errors="replace")))
        sent = form.get("csrf") or request.headers.get(CSRF_HEADER, "")
        expected = str(session.get("csrf", ""))
        if not sent or not secrets.compare_digest(sent.encode(), expected.encode()):
            return _page(
                request,
                "404.html",
                status_code=403,
                heading="Not signed out",
                message="Signing out needs the studio's own sign-out button (CSRF check "
                "failed); reload the page and try again.",
            )
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(state.sessions.cookie, path="/")
    return response


def _local(target: str) -> str:
    """Only a path on this server: never an open redirect to somewhere else."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{PREFIX}/jobs"
    return target


@router.get("/{rest:path}")
def unknown(rest: str, request: Request) -> Response:
    return not_found(request, f"The studio has no page /studio/{rest}.")


@icon_router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "favicon.ico",
        media_type="image/vnd.microsoft.icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )
