"""Secret ENV_VARS belong to the user who submitted them: a re-run by that user keeps them; a
re-run by anyone else (through the API or the studio's "Run again") runs without them, says which
were left out, and may send its own."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.jobspec import JobOptions
from flowyard.schemas import JobOut, JobSubmit
from tests.factories import final_job, make_project, process_workspace
from tests.server.test_auth import new_token
from tests.servers import Server

SECRET = "alices-s3cr3t-VALUE"
PROBE = """\
import hashlib, os
value = os.environ.get("API_KEY")
print("API_KEY set:", value is not None, flush=True)
if value is not None:
    print("API_KEY digest:", hashlib.sha256(value.encode()).hexdigest()[:16], flush=True)
print("PLAIN:", os.environ.get("PLAIN"), flush=True)
"""


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = process_workspace(tmp_path_factory.mktemp("rerun-secrets"), "cpu")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def original(workspace: Server, tmp_path_factory: pytest.TempPathFactory) -> JobOut:
    """A job the workspace's owner submitted with a secret and a plain ENV_VAR."""
    project = make_project(
        tmp_path_factory.mktemp("probe"), PROBE, parameters="{}", command="python main.py"
    )
    mlflow.set_tracking_uri(workspace.url)
    try:
        mlflow.set_experiment("rerun-secrets")
        run = mlflow.projects.run(
            str(project),
            backend="flowyard",
            backend_config={
                "COMPUTE": "cpu",
                "USE_CONDA": False,
                "STREAM_OUTPUT": False,
                "ENV_VARS": {"API_KEY": {"value": SECRET, "secret": True}, "PLAIN": "visible"},
            },
        )
    finally:
        mlflow.set_tracking_uri(None)
    with Client(workspace.url) as owner:
        job = final_job(owner, run.run_id)
        log = owner.read_log(job.id)[0].decode()
    assert "API_KEY set: True" in log and f"API_KEY digest: {_digest(SECRET)}" in log, log
    assert job.secret_env_names == ["API_KEY"]
    return job


def _rerun(client: Client, job_id: str, **body: Any) -> tuple[dict[str, Any], str]:
    """Re-run ``job_id`` as ``client``'s user; the answer and the re-run's log once it ends."""
    answer = client.request("POST", f"/jobs/{job_id}/rerun", json={"parameters": {}, **body})
    final_job(client, answer["id"])
    return answer, client.read_log(answer["id"])[0].decode()


def test_another_users_rerun_runs_without_the_secrets(workspace: Server, original: JobOut) -> None:
    with Client(workspace.url, token=new_token(workspace, "contributor")) as bob:
        answer, log = _rerun(bob, original.id)
        job = bob.get_job(answer["id"])
    assert answer["secret_env_names"] == []
    assert answer["secret_env_dropped"] == ["API_KEY"]
    assert "API_KEY" in job.events[0].reason and "secret_env" in job.events[0].reason
    assert job.user != original.user
    mlflow.set_tracking_uri(workspace.url)
    try:
        assert MlflowClient().get_run(job.id).data.tags["mlflow.user"] == job.user
    finally:
        mlflow.set_tracking_uri(None)
    assert "API_KEY set: False" in log and "PLAIN: visible" in log, log


def test_the_submitters_rerun_keeps_the_secrets(workspace: Server, original: JobOut) -> None:
    with Client(workspace.url) as owner:
        answer, log = _rerun(owner, original.id)
    assert answer["secret_env_names"] == ["API_KEY"]
    assert not answer.get("secret_env_dropped")
    assert f"API_KEY digest: {_digest(SECRET)}" in log and "PLAIN: visible" in log, log


def test_another_user_may_send_secrets_of_their_own(workspace: Server, original: JobOut) -> None:
    own = "bobs-own-value-1234"
    with Client(workspace.url, token=new_token(workspace, "contributor")) as bob:
        answer, log = _rerun(bob, original.id, secret_env={"API_KEY": own})
        raw = bob.http.get(f"/jobs/{answer['id']}").text
    assert answer["secret_env_names"] == ["API_KEY"]
    assert not answer.get("secret_env_dropped")
    assert f"API_KEY digest: {_digest(own)}" in log, log
    assert own not in raw


def test_run_again_in_the_studio_follows_the_same_rule(workspace: Server, original: JobOut) -> None:
    """The studio's "Run again" sends what its page script sends: the session cookie and the
    page's CSRF token."""
    with httpx.Client(base_url=workspace.url, timeout=60) as browser:
        signed_in = browser.post(
            "/studio/login", data={"token": new_token(workspace, "contributor"), "next": "/"}
        )
        assert signed_in.status_code == 303, signed_in.text
        page = browser.get(f"/studio/jobs/{original.id}").text
        match = re.search(r'<meta name="csrf-token" content="([^"]+)"', page)
        assert match, page[:500]
        answer = browser.post(
            f"/api/flowyard/v1/jobs/{original.id}/rerun",
            json={"parameters": {}},
            headers={"X-CSRF-Token": match.group(1)},
        )
    assert answer.status_code == 201, answer.text
    assert answer.json()["secret_env_dropped"] == ["API_KEY"]
    with Client(workspace.url) as owner:
        final_job(owner, answer.json()["id"])
        log = owner.read_log(answer.json()["id"])[0].decode()
    assert "API_KEY set: False" in log, log


def test_a_submit_cannot_bring_values_sealed_elsewhere(workspace: Server, original: JobOut) -> None:
    """Only the workspace seals: a sealed value sent in a job's options (copied from another
    job, say) would otherwise reach the new job's runner in the clear. A job's options have no
    place for one: the key is refused."""
    request = JobSubmit(
        experiment_id=original.experiment_id,
        snapshot_id=original.snapshot_id,
        project_uri=original.project_uri,
        entry_point=original.entry_point,
        options=JobOptions(command="python main.py"),
        compute="cpu",
        user="anyone",
    ).model_dump(mode="json")
    request["options"]["secret_env"] = {"API_KEY": "gAAAA-sealed"}
    with Client(workspace.url, token=new_token(workspace, "contributor")) as bob:
        answer = bob.http.post("/jobs", json=request)
    assert answer.status_code == 422
    assert answer.json()["error_code"] == "INVALID_REQUEST"
    assert answer.json()["message"].startswith("options.secret_env: ")
