"""Bad input on MLflow's routes gets a JSON 4xx, signing out needs the session's CSRF token, and
signing in is rate-limited per client address."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from flowyard import defaults
from flowyard.server.middleware.inputs import MAX_DEPTH, JsonServerErrors
from tests.servers import Server, auth_headers, new_workspace

DEEP = 100_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A workspace of this module's own: its sign-in limit is not shared with other tests."""
    server = new_workspace(tmp_path_factory.mktemp("hygiene"))
    yield server
    server.stop()


def post(server: Server, path: str, body: bytes) -> httpx.Response:
    headers = {**auth_headers(server), "Content-Type": "application/json"}
    return httpx.post(server.url + path, content=body, headers=headers, timeout=60)


def _json_400(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text[:300]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error_code"] in ("INVALID_PARAMETER_VALUE", "INVALID_REQUEST")
    for word in words:
        assert word in body["message"], body["message"]


BAD_BODIES = {
    "a list nested 100k deep": b"[" * DEEP + b"]" * DEEP,
    "an object nested 100k deep": b'{"a":' * DEEP + b"1" + b"}" * DEEP,
    "an object one past the bound": b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1),
    "a deep body inside a JSON string": json.dumps("[" * DEEP + "]" * DEEP).encode(),
    "invalid UTF-8": b'{"name": "\xff\xfe"}',
    "a JSON list": b'[{"name": "x"}]',
    "a JSON number": b"12",
    "not JSON": b'{"name": ',
}


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"])
@pytest.mark.parametrize("endpoint", ["runs/log-metric", "experiments/create"])
@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
def test_bad_json_on_mlflow_routes_is_a_json_400(
    server: Server, prefix: str, endpoint: str, kind: str
) -> None:
    _json_400(post(server, f"{prefix}/{endpoint}", BAD_BODIES[kind]))


def test_bodies_mlflow_takes_still_pass(server: Server) -> None:
    # null is an empty request to MLflow (a 400 of its own, naming the missing field); a body
    # nested to the bound, and NaN metrics, are MLflow's business.
    missing = post(server, "/api/2.0/mlflow/experiments/create", b"null")
    _json_400(missing, "name")
    nested = {"name": "nested-ok", "tags": [{"key": "k", "value": "v"}]}
    created = post(server, "/api/2.0/mlflow/experiments/create", json.dumps(nested).encode())
    assert created.status_code == 200, created.text
    run = post(server, "/api/2.0/mlflow/runs/create", b'{"experiment_id": "0"}').json()
    metric = {"run_id": run["run"]["info"]["run_id"], "key": "m", "value": "NaN", "timestamp": 1}
    logged = post(server, "/api/2.0/mlflow/runs/log-metric", json.dumps(metric).encode())
    assert logged.status_code == 200, logged.text


def test_a_deep_body_on_flowyards_api_is_a_json_400(server: Server) -> None:
    for body in (BAD_BODIES["a list nested 100k deep"], BAD_BODIES["an object nested 100k deep"]):
        _json_400(post(server, f"{defaults.API_PREFIX}/snapshots", body), "nested")


def test_an_html_500_from_mlflow_becomes_json() -> None:
    """Pure: MLflow's Flask app answers an uncaught exception with an HTML 500 (which real
    requests no longer reach, so a stand-in app plays MLflow here)."""

    async def mlflow_app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/html; charset=utf-8")]
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": b"<h1>Internal", "more_body": True})
        await send({"type": "http.response.body", "body": b" Server Error</h1>"})

    def answer(path: str) -> list[Message]:
        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        scope: Scope = {"type": "http", "method": "GET", "path": path, "headers": []}
        # In a thread of its own: the browser tests' sync API may hold this thread's loop.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, JsonServerErrors(mlflow_app)(scope, receive, send)).result()
        return sent

    start, body = answer("/api/2.0/mlflow/runs/get")
    assert start["status"] == 500
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert json.loads(body["body"])["error_code"] == "INTERNAL_ERROR"
    # The MLflow UI's own pages keep their HTML.
    assert [m.get("body") for m in answer("/")][1:] == [b"<h1>Internal", b" Server Error</h1>"]


def test_an_exception_escaping_mlflow_becomes_json() -> None:
    async def mlflow_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug")

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope: Scope = {"type": "http", "method": "POST", "path": "/ajax-api/2.0/x", "headers": []}
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, JsonServerErrors(mlflow_app)(scope, receive, send)).result()
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"])["error_code"] == "INTERNAL_ERROR"


# -- signing out and in --------------------------------------------------------------------


def sign_in(server: Server, client: httpx.Client) -> str:
    """Sign ``client`` in; returns the CSRF token the studio's pages carry."""
    response = client.post("/studio/login", data={"token": server.token, "next": "/studio/jobs"})
    assert response.status_code == 303, response.text
    page = client.get("/studio/jobs")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, "the sign-out form carries the session's CSRF token"
    return found.group(1)


def signed_in(client: httpx.Client) -> bool:
    return client.get("/studio/jobs").status_code == 200


def test_signing_out_needs_the_sessions_csrf_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        csrf = sign_in(server, client)
        # Another site's form: the browser sends the cookie (a top-level POST) but no token.
        for form in ({}, {"csrf": "forged"}):
            response = client.post(
                "/studio/logout", data=form, headers={"Origin": "https://elsewhere.example"}
            )
            assert response.status_code == 403, response.text
            assert "CSRF" in response.text
            assert signed_in(client)
        response = client.post("/studio/logout", data={"csrf": csrf})
        assert response.status_code == 303
        assert response.headers["location"] == "/studio/login"
        assert not signed_in(client)


def test_signing_out_with_the_header_works_too(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        csrf = sign_in(server, client)
        assert client.post("/studio/logout", headers={"X-CSRF-Token": csrf}).status_code == 303
        assert not signed_in(client)


def test_failed_sign_ins_are_rate_limited_per_client(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        statuses = [
            client.post("/studio/login", data={"token": f"fy_wrong_{i}"}).status_code
            for i in range(10)
        ]
        assert statuses == [401] * 10
        response = client.post("/studio/login", data={"token": "fy_wrong_again"})
        assert response.status_code == 429
        assert "Too many failed sign-ins" in response.text
        assert 0 < int(response.headers["Retry-After"]) <= 60
        # Even the right token waits: guessing must not go on in the meantime.
        blocked = client.post("/studio/login", data={"token": server.token})
        assert blocked.status_code == 429
        # Tokens (not sign-ins) keep working for API clients.
        assert (
            client.get(
                "/api/2.0/mlflow/experiments/search?max_results=1", headers=auth_headers(server)
            ).status_code
            == 200
        )
