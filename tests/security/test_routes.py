"""The access table, route by route: MLflow's live route table has no route the policy does not
classify, and against a real server every route of MLflow and of Flowyard, with every kind of
credential, is let through or refused as the table says."""

from __future__ import annotations

import http.client
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from packaging.version import Version

from flowyard.schemas import RoleName
from flowyard.server.auth import mlflow_routes
from flowyard.server.auth.policy import (
    JOB_TAG,
    JobFacts,
    attribute_run,
    needed_role,
    runner_call,
)
from flowyard.server.auth.tokens import Role
from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, free_port, init_workspace

API = "/api/flowyard/v1"

# Every route the server's ASGI app answers, read from the app itself in a process of its own
# (importing MLflow's server app reads its stores from the environment).
ENUMERATE = r"""
import json, re, sys, tempfile, warnings
from pathlib import Path
warnings.simplefilter("ignore")
from fastapi.routing import iter_route_contexts
from starlette.routing import Mount
from flowyard.server.app import create_app
from flowyard.server.settings import ServerSettings

tmp = Path(tempfile.mkdtemp())
app = create_app(ServerSettings(
    workspace_name="routes", db_url=f"sqlite:///{tmp}/db.sqlite",
    artifacts_destination=str(tmp / "artifacts"), secret_key_file=str(tmp / "key"),
))

def rule(path):
    path = re.sub(r"\{(\w+):path\}", r"<path:\1>", path)
    return re.sub(r"\{(\w+)\}", r"<\1>", path)

def routes(app):
    found, mounts = [], {}
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            mounts[route.original_route.path] = route.original_route.app
            continue
        found += [[m, rule(route.path)] for m in sorted((route.methods or set()) - {"HEAD"})]
    return found, mounts

flowyard, mounts = routes(app)
mlflow, inner = routes(mounts[""])
from mlflow.server import app as flask_app
for r in flask_app.url_map.iter_rules():
    mlflow += [[m, r.rule] for m in sorted(r.methods - {"HEAD", "OPTIONS"})]
json.dump({"flowyard": flowyard, "mlflow": mlflow, "mounts": sorted(mounts)}, sys.stdout)
"""


@pytest.fixture(scope="module")
def live_routes() -> dict[str, list[tuple[str, str]]]:
    done = subprocess.run(
        [sys.executable, "-c", ENUMERATE], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(done.stdout)
    assert found["mounts"] == ["", "/studio/static"], found["mounts"]
    return {k: [(m, r) for m, r in found[k]] for k in ("flowyard", "mlflow")}


# -- the pure policy ---------------------------------------------------------------------------


def test_every_route_mlflow_registers_is_classified(
    live_routes: dict[str, list[tuple[str, str]]],
) -> None:
    """An MLflow upgrade that adds (or renames) a route fails here until the table says who may
    call it; meanwhile the route needs an owner."""
    live = set(live_routes["mlflow"])
    unclassified = sorted(live - set(mlflow_routes.ROUTES))
    assert not unclassified, f"classify in flowyard/server/auth/mlflow_routes.py: {unclassified}"
    installed = Version(importlib.metadata.version("mlflow"))
    newer = {r for r, v in mlflow_routes.ADDED_IN.items() if Version(v) > installed}
    stale = sorted(set(mlflow_routes.ROUTES) - live - newer)
    assert not stale, f"MLflow no longer has these routes: {stale}"
    assert not newer & live, f"MLflow {installed} has these routes already: {sorted(newer & live)}"


def test_each_role_has_its_name_on_the_wire_in_rank_order() -> None:
    assert [role.label for role in sorted(Role)] == list(RoleName)
    assert all(Role.parse(name) is role for role, name in zip(sorted(Role), RoleName, strict=True))


def test_deleting_or_removing_anything_needs_an_owner() -> None:
    words = ("delete", "remove", "detach")
    for (method, rule), role in mlflow_routes.ROUTES.items():
        if method == "DELETE" or any(w in rule for w in words):
            assert role is Role.OWNER, (method, rule)


def test_reads_and_searches_need_a_reader() -> None:
    assert needed_role("POST", "/api/2.0/mlflow/runs/search") is Role.READER
    assert needed_role("POST", "/ajax-api/3.0/mlflow/traces/search") is Role.READER
    assert needed_role("GET", "/api/2.0/mlflow/runs/get") is Role.READER
    assert needed_role("HEAD", "/api/2.0/mlflow-artifacts/artifacts/1/x/artifacts/a.txt") is (
        Role.READER
    )
    assert needed_role("POST", "/graphql") is Role.READER


def test_unknown_mlflow_paths_need_an_owner_but_the_ui_is_open_to_readers() -> None:
    assert needed_role("GET", "/api/2.0/mlflow/runs/not-a-route") is Role.OWNER
    assert needed_role("POST", "/api/2.0/mlflow/runs/get") is Role.OWNER  # GET-only route
    assert needed_role("GET", "/whatever") is Role.OWNER
    for path in ("/", "/static-files/favicon.ico", "/static-files/static/js/main.js"):
        assert needed_role("GET", path) is Role.READER, path
    assert needed_role("OPTIONS", "/api/2.0/mlflow/runs/create") is Role.READER
    assert needed_role("GET", "/health") is None
    assert needed_role("GET", f"{API}/health") is None


def test_path_converters_match_as_mlflow_matches() -> None:
    deep = "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/a/b/c.txt"
    assert needed_role("PUT", deep) is Role.CONTRIBUTOR
    assert needed_role("DELETE", deep) is Role.OWNER
    assert needed_role("DELETE", "/api/2.0/mlflow/logged-models/m-1/tags/a") is Role.OWNER
    assert needed_role("PATCH", "/api/2.0/mlflow/logged-models/m-1/tags") is Role.CONTRIBUTOR
    assert needed_role("POST", "/api/2.0/mlflow/runs/create/") is Role.CONTRIBUTOR


def test_flowyard_api_keeps_its_table() -> None:
    assert needed_role("POST", f"{API}/jobs") is Role.CONTRIBUTOR
    assert needed_role("GET", f"{API}/jobs/x/logs") is Role.READER
    assert needed_role("GET", f"{API}/tokens") is Role.OWNER
    assert needed_role("POST", f"{API}/computes") is Role.OWNER
    assert needed_role("POST", f"{API}/gc") is Role.OWNER
    assert needed_role("GET", f"{API}/retention") is Role.READER
    assert needed_role("PUT", f"{API}/retention") is Role.OWNER
    assert needed_role("PUT", f"{API}/retention/experiments/1") is Role.OWNER
    assert needed_role("DELETE", f"{API}/jobs/x") is Role.OWNER
    assert needed_role("DELETE", f"{API}/experiments/1") is Role.OWNER
    assert needed_role("POST", f"{API}/sweeps") is Role.CONTRIBUTOR
    assert needed_role("GET", f"{API}/sweeps/x") is Role.READER
    assert needed_role("GET", "/studio/jobs") is Role.READER
    assert needed_role("POST", "/studio/login") is None
    assert needed_role("GET", "/favicon.ico") is None
    assert needed_role("GET", "/favicon.ico/../studio/jobs") is Role.OWNER


def test_only_a_runners_posts_are_runner_calls() -> None:
    for call in ("start", "status", "heartbeat", "logs"):
        assert runner_call("POST", f"{API}/jobs/abc/{call}") == "abc"
    assert runner_call("GET", f"{API}/jobs/abc/logs") is None
    assert runner_call("POST", f"{API}/jobs/abc/cancel") is None
    assert runner_call("POST", f"{API}/jobs/a\0b/heartbeat") == "a\0b"  # any id's shape


def test_a_run_a_job_creates_is_its_submitters_and_tagged_with_the_job() -> None:
    job = JobFacts(id="j" * 32)
    body = {
        "experiment_id": "3",
        "user_id": "mallory",
        "tags": [
            {"key": "mlflow.user", "value": "mallory"},
            {"key": JOB_TAG, "value": "forged"},
            {"key": "mlflow.parentRunId", "value": "p"},
        ],
    }
    assert attribute_run(body, job, "ana") == {
        "experiment_id": "3",
        "user_id": "ana",
        "tags": [
            {"key": "mlflow.parentRunId", "value": "p"},
            {"key": "mlflow.user", "value": "ana"},
            {"key": JOB_TAG, "value": job.id},
        ],
    }
    assert attribute_run({}, job, "ana")["user_id"] == "ana"
    with pytest.raises(ValueError):
        attribute_run({"tags": "x"}, job, "ana")


# -- the attack matrix against a real server ---------------------------------------------------

# Small body limits: every request with a body that gets past authentication is then refused
# for its size before any route runs, so the matrix changes nothing on the server.
OVERSIZE = 300 * 1024
LIMITS = ["--max-body-mb", "0.1", "--max-blob-mb", "0.1", "--max-log-append-kib", "256"]
RUNNER = "runner"  # only the job's own token
# Flowyard's own routes and what they need, written out here so the matrix checks the policy
# rather than repeating it.
FLOWYARD: dict[tuple[str, str], str] = {
    ("GET", f"{API}/openapi.json"): "reader",
    ("GET", f"{API}/docs"): "reader",
    # FastAPI's Swagger helper outside the API prefix: unknown to the policy, so closed.
    ("GET", "/docs/oauth2-redirect"): "owner",
    ("GET", f"{API}/info"): "reader",
    ("GET", f"{API}/health"): "public",
    ("GET", f"{API}/whoami"): "reader",
    ("POST", f"{API}/blobs/missing"): "contributor",
    ("PUT", f"{API}/blobs/<digest>"): "contributor",
    ("POST", f"{API}/blobs/batch"): "contributor",
    ("GET", f"{API}/blobs/<digest>"): "reader",
    ("POST", f"{API}/snapshots"): "contributor",
    ("GET", f"{API}/snapshots/<snapshot_id>"): "reader",
    ("GET", f"{API}/snapshots/<snapshot_id>/files/<path:path>"): "reader",
    ("POST", f"{API}/jobs"): "contributor",
    ("GET", f"{API}/jobs"): "reader",
    ("DELETE", f"{API}/jobs"): "owner",
    ("DELETE", f"{API}/jobs/<job_id>"): "owner",
    ("DELETE", f"{API}/experiments/<experiment_id>"): "owner",
    ("POST", f"{API}/gc"): "owner",
    ("GET", f"{API}/retention"): "reader",
    ("PUT", f"{API}/retention"): "owner",
    ("PUT", f"{API}/retention/experiments/<experiment_id>"): "owner",
    ("DELETE", f"{API}/retention/experiments/<experiment_id>"): "owner",
    ("GET", f"{API}/jobs/<job_id>"): "reader",
    ("POST", f"{API}/jobs/<job_id>/cancel"): "contributor",
    ("POST", f"{API}/jobs/<job_id>/rerun"): "contributor",
    ("POST", f"{API}/jobs/<job_id>/start"): RUNNER,
    ("POST", f"{API}/jobs/<job_id>/status"): RUNNER,
    ("POST", f"{API}/jobs/<job_id>/heartbeat"): RUNNER,
    ("POST", f"{API}/jobs/<job_id>/logs"): RUNNER,
    ("GET", f"{API}/jobs/<job_id>/logs"): "reader",
    ("GET", f"{API}/jobs/<job_id>/artifacts"): "reader",
    ("GET", f"{API}/jobs/<job_id>/artifacts/<path:path>"): "reader",
    ("POST", f"{API}/sweeps"): "contributor",
    ("GET", f"{API}/sweeps/<sweep_id>"): "reader",
    ("GET", f"{API}/computes"): "reader",
    ("POST", f"{API}/computes"): "owner",
    ("GET", f"{API}/computes/<name>"): "reader",
    ("PATCH", f"{API}/computes/<name>"): "owner",
    ("DELETE", f"{API}/computes/<name>"): "owner",
    ("GET", f"{API}/users"): "owner",
    ("POST", f"{API}/users"): "owner",
    ("DELETE", f"{API}/users/<name>"): "owner",
    ("GET", f"{API}/tokens"): "owner",
    ("POST", f"{API}/tokens"): "owner",
    ("DELETE", f"{API}/tokens/<token_id>"): "owner",
    ("GET", "/studio"): "reader",
    ("GET", "/studio/"): "reader",
    ("GET", "/studio/jobs"): "reader",
    ("GET", "/studio/jobs/<job_id>"): "reader",
    ("GET", "/studio/jobs/<job_id>/log.txt"): "reader",
    ("GET", "/studio/jobs/<job_id>/log/lines"): "reader",
    ("GET", "/studio/jobs/<job_id>/log/search"): "reader",
    ("GET", "/studio/jobs/<job_id>/snapshot.zip"): "reader",
    ("GET", "/studio/jobs/<job_id>/snapshot/<path:path>"): "reader",
    ("GET", "/studio/compare"): "reader",
    ("GET", "/studio/metric-history"): "reader",
    ("GET", "/studio/sweeps/<sweep_id>"): "reader",
    ("GET", "/studio/computes"): "reader",
    ("GET", "/studio/login"): "public",
    ("POST", "/studio/login"): "public",
    ("POST", "/studio/logout"): "public",
    ("GET", "/studio/<path:rest>"): "reader",
    ("GET", "/studio/experiments"): "reader",
    ("GET", "/studio/experiments/<experiment_id>"): "reader",
    ("GET", "/studio/experiments/<experiment_id>/ranges"): "reader",
    ("GET", "/favicon.ico"): "public",
}
# Routes whose handler reaches out to the internet (a model catalogue) and waits there: only the
# credentials that must be refused are tried on them.
REACHES_OUT = {("GET", "/ajax-api/3.0/mlflow/gateway/supported-models")}
LEVEL = {"reader": 1, "contributor": 2, "owner": 3}
CREDENTIALS = ("none", "reader", "contributor", "owner", "live job", "ended job")


@dataclass
class Matrix:
    server: Server
    tokens: dict[str, str | None]
    live_job: str
    ended_job: str


def local_job(server: Server) -> tuple[str, str]:
    """A job submitted to the local compute whose runner never starts: its id and job token."""
    return unstarted_job(server.url, {"Authorization": f"Bearer {server.token}"})


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    root = tmp_path_factory.mktemp("routes")
    port = free_port()
    init_workspace(root, port=port)
    # The live job must stay live however long the matrix takes.
    env = {"FLOWYARD_HEARTBEAT_TIMEOUT_S": "3600"}
    server = Server(args=LIMITS, cwd=root, port=port, env=env).start()
    try:
        live_job, live_token = local_job(server)
        ended_job, ended_token = local_job(server)
        ended = httpx.post(
            f"{server.url}{API}/jobs/{ended_job}/status",
            json={"status": "failed", "reason": "ended for the test"},
            headers={"Authorization": f"Bearer {ended_token}"},
            timeout=30,
        )
        assert ended.status_code == 200, ended.text
        tokens: dict[str, str | None] = {
            "none": None,
            "reader": new_token(server, "reader"),
            "contributor": new_token(server, "contributor"),
            "owner": server.token,
            "live job": live_token,
            "ended job": ended_token,
        }
        yield Matrix(server, tokens, live_job, ended_job)
    finally:
        server.stop()


def _paths(rule: str, matrix: Matrix) -> list[tuple[str, str | None]]:
    """Concrete paths for a rule, each with the job id it names (runner calls are tried on the
    live job and on another job)."""
    path = rule
    for name in ("path", "artifact_path", "filename", "rest"):
        path = path.replace(f"<path:{name}>", "0/dummy/x.txt")
    for name in ("name", "version", "key", "alias"):
        path = path.replace(f"<path:{name}>", "dummy")
    if "<job_id>" not in path:
        return [(_fill(path), None)]
    jobs = (matrix.live_job, matrix.ended_job)
    return [(_fill(path.replace("<job_id>", job)), job) for job in jobs]


def _fill(path: str) -> str:
    while "<" in path:
        start = path.index("<")
        path = path[:start] + "dummy0" + path[path.index(">", start) + 1 :]
    return path


def _status(server: Server, method: str, path: str, token: str | None) -> int:
    """The answer to a request. Where the server bounds the body, an oversize one is announced
    but never sent, so a request that gets past authentication is refused for its size and
    changes nothing; MLflow's artifact uploads (unbounded) and run creations and updates (which
    a job's are read to be rewritten) get a small body that cannot succeed either."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        if token:
            conn.putheader("Authorization", f"Bearer {token}")
        body = b""
        if method not in ("GET", "HEAD"):
            small = "/mlflow-artifacts/" in path or path.endswith(("/runs/create", "/runs/update"))
            body = b'{"experiment_id": "no-such-experiment"}' if small else b""
            conn.putheader("Content-Type", "application/json")
            conn.putheader("Content-Length", str(len(body) if small else OVERSIZE))
        conn.endheaders(body or None)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _expected(credential: str, need: str, job_in_path: str | None, matrix: Matrix) -> int | None:
    """401 or 403 when the request must be refused, else None."""
    if need == "public":
        return None
    if credential in ("none", "ended job"):
        return 401
    if need == RUNNER:
        return None if credential == "live job" and job_in_path == matrix.live_job else 403
    level = LEVEL["contributor" if credential == "live job" else credential]
    return None if level >= LEVEL[need] else 403


def test_every_route_with_every_credential(
    matrix: Matrix, live_routes: dict[str, list[tuple[str, str]]]
) -> None:
    assert set(live_routes["flowyard"]) == set(FLOWYARD), "classify new Flowyard routes above"
    needs = dict(FLOWYARD)
    for method, rule in live_routes["mlflow"]:
        role = mlflow_routes.ROUTES.get((method, rule), Role.OWNER)
        needs.setdefault((method, rule), role.label if role else "public")
    needs["GET", "/studio/static/<path:path>"] = "public"
    cases: list[tuple[str, str, str, str | None, str]] = [
        (credential, method, path, job, need)
        for (method, rule), need in sorted(needs.items())
        for path, job in _paths(rule, matrix)
        for credential in CREDENTIALS
        if (method, rule) not in REACHES_OUT or _expected(credential, need, job, matrix)
    ]

    def run(case: tuple[str, str, str, str | None, str]) -> str | None:
        credential, method, path, job, need = case
        status = _status(matrix.server, method, path, matrix.tokens[credential])
        expected = _expected(credential, need, job, matrix)
        refused = status in (401, 403)
        if (expected is None and not refused) or expected == status:
            return None
        return f"{credential} {method} {path} (needs {need}): {status}, not {expected or 'pass'}"

    with ThreadPoolExecutor(8) as pool:
        wrong = [w for w in pool.map(run, cases) if w]
    assert not wrong, "\n".join(wrong)


def _create_run(server: Server, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/2.0/mlflow/runs/create",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_a_job_cannot_create_a_run_for_someone_else(matrix: Matrix) -> None:
    token = matrix.tokens["live job"]
    assert token
    forged = {
        "experiment_id": "0",
        "user_id": "mallory",
        "tags": [{"key": "mlflow.user", "value": "mallory"}, {"key": JOB_TAG, "value": "x"}],
    }
    created = _create_run(matrix.server, token, forged)
    assert created.status_code == 200, created.text
    run = created.json()["run"]
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert run["info"]["user_id"] == "owner" and tags["mlflow.user"] == "owner"
    assert tags[JOB_TAG] == matrix.live_job
    # A user's own runs are left as they are: only a job's are rewritten.
    contributor = matrix.tokens["contributor"]
    assert contributor
    mine = _create_run(matrix.server, contributor, {"experiment_id": "0", "user_id": "me"})
    assert mine.json()["run"]["info"]["user_id"] == "me"
    bad = _create_run(matrix.server, token, {"experiment_id": "0", "tags": "x"})
    assert bad.status_code == 400 and "tags are a list" in bad.json()["message"]


def test_runner_calls_answer_only_the_jobs_own_token(matrix: Matrix) -> None:
    url = f"{matrix.server.url}{API}/jobs/{matrix.live_job}/heartbeat"
    for credential in ("owner", "contributor"):
        token = matrix.tokens[credential]
        refused = httpx.post(url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert refused.status_code == 403
        assert "is a runner's call" in refused.json()["message"]
    own = httpx.post(url, headers={"Authorization": f"Bearer {matrix.tokens['live job']}"})
    assert own.status_code == 200 and own.json()["cancel_requested"] is False
