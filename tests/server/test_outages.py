"""A database outage, for real: the server's PostgreSQL connection is cut and restored by a proxy.
While it is cut every answer that needs the database is a JSON 503 with Retry-After (MLflow's own
API included) and the health probe names the database; once it is back everything answers again
without restarting the server."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from tests.proxy import TcpProxy
from tests.servers import Server, auth_headers

pytestmark = pytest.mark.postgres

API = "/api/flowyard/v1"
CALLS = {
    "flowyard": ("GET", f"{API}/computes", {}),
    "mlflow": ("POST", "/api/2.0/mlflow/experiments/search", {"json": {"max_results": 1}}),
    "studio": ("GET", "/studio/jobs", {}),
}


def _call(server: Server, name: str, headers: dict[str, str]) -> httpx.Response:
    method, path, extra = CALLS[name]
    return httpx.request(method, server.url + path, headers=headers, timeout=30, **extra)


def _wait_for(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the server did not recover from the outage"
        time.sleep(0.2)


def test_an_outage_is_a_json_503_and_the_server_recovers_on_its_own(
    cuttable_postgres_server: tuple[Server, TcpProxy],
) -> None:
    server, proxy = cuttable_postgres_server
    headers = auth_headers(server)
    for name in CALLS:
        assert _call(server, name, headers).status_code == 200, name

    proxy.cut()
    time.sleep(2.5)  # past the token cache: the token lookup itself meets the outage
    health = httpx.get(server.url + f"{API}/health", timeout=30)
    assert health.status_code == 503
    assert health.json()["down"] == ["database"]
    assert health.headers["retry-after"]
    for name in CALLS:
        answer = _call(server, name, headers)
        assert answer.status_code == 503, (name, answer.text)
        assert answer.headers["retry-after"], name
        assert answer.headers["content-type"].startswith("application/json"), name
        body = answer.json()
        expected = "TEMPORARILY_UNAVAILABLE" if name == "mlflow" else "DATABASE_UNAVAILABLE"
        assert body["error_code"] in (expected, "DATABASE_UNAVAILABLE"), (name, body)
        assert body["message"], name

    proxy.restore()
    _wait_for(lambda: httpx.get(server.url + f"{API}/health", timeout=30).status_code == 200)
    for name in CALLS:
        _wait_for(lambda name=name: _call(server, name, headers).status_code == 200)
    assert server.proc is not None and server.proc.poll() is None
