"""A job is claimed by one runner: the same runner may claim again (a retried call), a second
runner may not, even where both report the same host and pid (every sandboxed runner has its
namespace's small pid)."""

from __future__ import annotations

import httpx

from flowyard import defaults
from tests.factories import unstarted_job
from tests.servers import Server, auth_headers


def test_a_second_runner_with_the_same_pid_cannot_claim_the_job(sqlite_server: Server) -> None:
    job_id, token = unstarted_job(sqlite_server.url, auth_headers(sqlite_server))
    start = f"{sqlite_server.url}{defaults.API_PREFIX}/jobs/{job_id}/start"
    runner = {"Authorization": f"Bearer {token}"}
    first = {"host": "h", "pid": 2, "instance": "a" * 16}
    assert httpx.post(start, json=first, headers=runner).status_code == 200
    assert httpx.post(start, json=first, headers=runner).status_code == 200  # a retry
    second = httpx.post(start, json={**first, "instance": "b" * 16}, headers=runner)
    assert second.status_code == 409, second.text
    assert "already claimed" in second.json()["message"]
