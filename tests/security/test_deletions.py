"""Deleting for good is an owner's: readers, contributors and jobs' own tokens are refused on every
deletion route, on setting a retention policy (which deletes later) and on running the garbage
collection, and nothing goes; and what a contributor set up cannot turn an owner's deletion
against other experiments' artifacts or the snapshot blobs (an experiment whose
artifact_location is the store's root, or another experiment's folder)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers, new_workspace, tracking

API = "/api/flowyard/v1"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tracking(new_workspace(tmp_path_factory.mktemp("delete-rights"))) as server:
        yield server


def _ended_job(server: Server) -> str:
    job_id, _token = unstarted_job(server.url, auth_headers(server))
    cancel = httpx.post(f"{server.url}{API}/jobs/{job_id}/cancel", headers=auth_headers(server))
    assert cancel.status_code == 200, cancel.text
    return job_id


def test_only_an_owner_deletes(workspace: Server) -> None:
    job_id, job_token = unstarted_job(workspace.url, auth_headers(workspace))
    httpx.post(f"{workspace.url}{API}/jobs/{job_id}/cancel", headers=auth_headers(workspace))
    experiment = MlflowClient().create_experiment("rights")
    routes = [
        ("DELETE", f"{API}/jobs/{job_id}"),
        ("DELETE", f"{API}/jobs?experiment_id=0"),
        ("DELETE", f"{API}/experiments/{experiment}"),
        ("PUT", f"{API}/retention"),
        ("PUT", f"{API}/retention/experiments/0"),
        ("DELETE", f"{API}/retention/experiments/0"),
        ("POST", f"{API}/gc"),
    ]
    tokens = {
        "none": None,
        "reader": new_token(workspace, "reader"),
        "contributor": new_token(workspace, "contributor"),
        "the job's own": job_token,
    }
    for who, token in tokens.items():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, route in routes:
            answer = httpx.request(
                method, f"{workspace.url}{route}", headers=headers, json={"keep_last": 0}
            )
            assert answer.status_code in (401, 403), (who, method, route, answer.status_code)
    assert httpx.get(
        f"{workspace.url}{API}/jobs/{job_id}", headers=auth_headers(workspace)
    ).is_success
    assert MlflowClient().get_experiment(experiment).lifecycle_stage == "active"
    policies = httpx.get(f"{workspace.url}{API}/retention", headers=auth_headers(workspace))
    assert policies.json() == {
        "workspace": {"keep_days": None, "keep_last": None},
        "experiments": {},
    }
    owner = httpx.delete(f"{workspace.url}{API}/jobs/{job_id}", headers=auth_headers(workspace))
    assert owner.status_code == 200, owner.text
    # The deleted job's token is worth nothing now.
    beat = httpx.post(
        f"{workspace.url}{API}/jobs/{job_id}/heartbeat",
        headers={"Authorization": f"Bearer {job_token}"},
    )
    assert beat.status_code in (401, 403, 404)


def _files(folder: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(root, name), folder)
        for root, _dirs, names in os.walk(folder)
        for name in names
    }


@pytest.mark.parametrize("location", ["mlflow-artifacts:/", "mlflow-artifacts:/{other}"])
def test_an_experiment_located_over_others_deletes_only_its_own_runs(
    workspace: Server, tmp_path: Path, location: str
) -> None:
    tracking = MlflowClient()
    other = tracking.create_experiment(f"bystander-{tmp_path.name}")
    kept = tracking.create_run(other)
    (tmp_path / "keep.txt").write_text("keep me")
    tracking.log_artifact(kept.info.run_id, str(tmp_path / "keep.txt"))
    _ended_job(workspace)  # its snapshot blob is in the store too
    hostile = tracking.create_experiment(
        f"hostile-{tmp_path.name}", artifact_location=location.format(other=other)
    )
    run = tracking.create_run(hostile)
    tracking.log_artifact(run.info.run_id, str(tmp_path / "keep.txt"), "mine")
    store = workspace.cwd / "ws" / "artifacts"
    before = _files(store)
    assert any(f.startswith("flowyard/blobs/") for f in before)

    answer = httpx.delete(
        f"{workspace.url}{API}/experiments/{hostile}", headers=auth_headers(workspace)
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["artifact_files"] == 1
    gone = before - _files(store)
    assert len(gone) == 1 and run.info.run_id in gone.pop()
    assert tracking.get_run(kept.info.run_id).info.lifecycle_stage == "active"


def test_hostile_ids_are_answered_not_found(workspace: Server) -> None:
    headers = auth_headers(workspace)
    for experiment in ("1 OR 1=1", "-1", "9" * 40, "%2e%2e"):
        answer = httpx.delete(f"{workspace.url}{API}/experiments/{experiment}", headers=headers)
        assert answer.status_code == 404, (experiment, answer.text)
    for job in ("x' OR '1'='1", "..", "a" * 300):
        answer = httpx.delete(f"{workspace.url}{API}/jobs/{job}", headers=headers)
        assert answer.status_code in (404, 405), (job, answer.text)
