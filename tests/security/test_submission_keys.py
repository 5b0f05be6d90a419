"""A submission key belongs to the user who sent it: another user sending the same key (guessed,
or read off a shared log) gets a job of their own, never the first user's job or its runner
token."""

from __future__ import annotations

import uuid
from pathlib import Path

from flowyard.client import Client
from flowyard.schemas import JobSubmit
from flowyard.snapshot import build_manifest, upload
from tests.factories import make_project
from tests.servers import Server


def test_another_users_key_gets_a_job_of_their_own(sqlite_server: Server, tmp_path: Path) -> None:
    user = f"mallory-{uuid.uuid4().hex[:6]}"
    with Client(sqlite_server.url, token=sqlite_server.token) as owner:
        owner.request("POST", "/users", json={"name": user})
        token = owner.request("POST", "/tokens", json={"role": "contributor", "user": user})
        project = make_project(tmp_path / "p", "print('mine')\n")
        request = JobSubmit(
            experiment_id="0",
            snapshot_id=upload(owner, build_manifest(project)).id,
            project_uri=".",
            entry_point="main",
            user="ignored: the token says who",
            submission_key=uuid.uuid4().hex,
        )
        first = owner.submit_job(request)
    with Client(sqlite_server.url, token=token["token"]) as other:
        second = other.submit_job(request)
        again = other.submit_job(request)
    assert second.id != first.id and second.user == user
    assert second.runner_token != first.runner_token
    assert again.id == second.id  # their own retry still gets their own job
