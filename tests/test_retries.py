"""The one retry policy: which failures are retried, and the client's safe requests retried
across a real cut between it and the workspace (a proxy, cut and restored)."""

from __future__ import annotations

import threading
import time

import pytest

from flowyard.client import Client
from flowyard.errors import (
    ConflictError,
    DatabaseUnavailableError,
    FlowyardError,
    InvalidRequestError,
    NotAWorkspaceError,
    WorkspaceUnavailableError,
    WorkspaceUnreachableError,
)
from flowyard.retries import transient
from tests.proxy import TcpProxy
from tests.servers import Server


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (WorkspaceUnreachableError("x"), True),
        (WorkspaceUnavailableError("x"), True),
        (DatabaseUnavailableError("x"), True),
        (FlowyardError("an unexplained 500"), True),
        (InvalidRequestError("x"), False),
        (ConflictError("x"), False),
        (NotAWorkspaceError("x"), False),
        (ValueError("x"), False),
    ],
)
def test_only_passing_failures_are_retried(error: BaseException, retried: bool) -> None:
    assert transient(error) is retried


def test_a_read_waits_out_a_cut_and_a_submission_does_not(sqlite_server: Server) -> None:
    with TcpProxy(target_port=sqlite_server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        with Client(url, token=sqlite_server.token, retry_for_s=30) as client:
            client.info()
            proxy.cut()
            started = time.monotonic()
            with pytest.raises(WorkspaceUnreachableError):
                client.request("POST", "/jobs", json={})
            assert time.monotonic() - started < 2
            restore = threading.Timer(2, proxy.restore)
            restore.start()
            try:
                assert client.request("GET", "/computes") is not None
            finally:
                restore.join()
            assert time.monotonic() - started >= 2


def test_a_workspace_that_never_answered_is_reported_at_once(sqlite_server: Server) -> None:
    with TcpProxy(target_port=sqlite_server.port) as proxy:
        proxy.cut()
        started = time.monotonic()
        with (
            Client(f"http://127.0.0.1:{proxy.port}", retry_for_s=30) as client,
            pytest.raises(WorkspaceUnreachableError),
        ):
            client.request("GET", "/computes")
        assert time.monotonic() - started < 2


@pytest.mark.postgres
def test_a_read_waits_out_a_database_outage(
    cuttable_postgres_server: tuple[Server, TcpProxy],
) -> None:
    server, proxy = cuttable_postgres_server
    with Client(server.url, token=server.token, retry_for_s=60) as client:
        client.info()
        proxy.cut()
        time.sleep(2.5)  # past the token cache: the server answers 503 DATABASE_UNAVAILABLE
        restore = threading.Timer(2, proxy.restore)
        restore.start()
        try:
            assert client.request("GET", "/computes") is not None
        finally:
            restore.join()
