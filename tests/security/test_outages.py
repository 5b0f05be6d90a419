"""A database outage never lets a request through unchecked: a token the server cannot look up
is answered with a 503 (retry), never served and never taken for anonymous."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.proxy import TcpProxy
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers

pytestmark = pytest.mark.postgres

API = "/api/flowyard/v1"
# Public paths aside, each needs a known token; /info needs none of the database once let in.
PATHS = [("GET", f"{API}/info"), ("POST", "/api/2.0/mlflow/experiments/create")]


def test_a_token_that_cannot_be_checked_is_never_let_through(
    cuttable_postgres_server: tuple[Server, TcpProxy],
) -> None:
    server, proxy = cuttable_postgres_server
    reader = new_token(server, "reader")
    # Well formed, a real token's id, a wrong secret: only the database can tell.
    forged = reader[:-4] + ("aaaa" if not reader.endswith("aaaa") else "bbbb")
    proxy.cut()
    time.sleep(2.5)  # past the token cache
    try:
        for method, path in PATHS:
            for token in (forged, reader):
                answer = httpx.request(
                    method,
                    server.url + path,
                    headers={"Authorization": f"Bearer {token}"},
                    json={"name": "outage"},
                    timeout=30,
                )
                assert answer.status_code == 503, (method, path, answer.text)
                assert answer.json()["error_code"] == "DATABASE_UNAVAILABLE"
            no_token = httpx.request(method, server.url + path, json={}, timeout=30)
            assert no_token.status_code == 401
    finally:
        proxy.restore()
    deadline = time.monotonic() + 30
    while httpx.get(server.url + f"{API}/health", timeout=30).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    created = httpx.post(
        server.url + "/api/2.0/mlflow/experiments/create",
        headers={"Authorization": f"Bearer {reader}"},
        json={"name": "outage"},
        timeout=30,
    )
    assert created.status_code == 403  # the reader is known again, with a reader's rights
    assert httpx.get(server.url + f"{API}/info", headers=auth_headers(server)).status_code == 200
