"""A submission is idempotent: sent again with its key (a retry whose answer was lost), it gets
the job the first one made, and never leaves a second job or a run without a job."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType

from flowyard.client import Client
from flowyard.errors import ConflictError, InvalidRequestError
from flowyard.schemas import JobOut, JobSubmit
from flowyard.snapshot import build_manifest, upload
from tests.factories import make_project
from tests.proxy import TcpProxy
from tests.servers import Server


def _request(client: Client, tmp_path: Path, experiment_id: str, key: str | None) -> JobSubmit:
    project = make_project(tmp_path / "project", "print('hello')\n")
    return JobSubmit(
        experiment_id=experiment_id,
        snapshot_id=upload(client, build_manifest(project)).id,
        project_uri=".",
        entry_point="main",
        parameters={"alpha": "0.5"},
        user="someone",
        submission_key=key,
    )


@pytest.fixture(autouse=True)
def _mlflow_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Each test's MLflow calls carry the token saved for the tracked server, not one an earlier
    # test left exported.
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    yield
    mlflow.set_tracking_uri(None)


def _mlflow(server: Server) -> MlflowClient:
    mlflow.set_tracking_uri(server.url)
    return MlflowClient()


def _experiment(server: Server) -> str:
    return _mlflow(server).create_experiment(f"submissions-{uuid.uuid4().hex[:8]}")


def _runs(server: Server, experiment_id: str, view: int = ViewType.ACTIVE_ONLY) -> list[str]:
    found = _mlflow(server).search_runs([experiment_id], run_view_type=view)
    return [r.info.run_id for r in found]


def test_the_same_key_gets_the_same_job(server: Server, tmp_path: Path) -> None:
    experiment = _experiment(server)
    with Client(server.url) as client:
        request = _request(client, tmp_path, experiment, uuid.uuid4().hex)
        first = client.submit_job(request)
        again = client.submit_job(request)
        assert again.id == first.id
        # The submitter starts a local job's runner: the retry's answer carries its token too.
        assert again.runner_token
        other = client.submit_job(request.model_copy(update={"submission_key": None}))
        assert other.id != first.id
    assert sorted(_runs(server, experiment)) == sorted([first.id, other.id])


def test_a_key_reused_for_another_submission_is_refused(server: Server, tmp_path: Path) -> None:
    experiment = _experiment(server)
    with Client(server.url) as client:
        request = _request(client, tmp_path, experiment, uuid.uuid4().hex)
        first = client.submit_job(request)
        changed = request.model_copy(update={"parameters": {"alpha": "0.9"}})
        with pytest.raises(ConflictError, match="send a new key with each new submission"):
            client.submit_job(changed)
    assert _runs(server, experiment) == [first.id]


def test_a_malformed_key_is_refused_before_anything_is_made(
    sqlite_server: Server, tmp_path: Path
) -> None:
    experiment = _experiment(sqlite_server)
    with Client(sqlite_server.url) as client:
        body = _request(client, tmp_path, experiment, None).model_dump(mode="json")
        with pytest.raises(InvalidRequestError, match="submission_key"):
            client.request("POST", "/jobs", json={**body, "submission_key": "a b"})
    assert _runs(sqlite_server, experiment, ViewType.ALL) == []


def test_one_key_sent_at_once_from_many_threads_makes_one_job(
    server: Server, tmp_path: Path
) -> None:
    experiment = _experiment(server)
    with Client(server.url) as client:
        request = _request(client, tmp_path, experiment, uuid.uuid4().hex)
    answers: list[JobOut] = []
    failures: list[BaseException] = []

    def send() -> None:
        try:
            with Client(server.url) as own:
                answers.append(own.submit_job(request))
        except BaseException as e:
            failures.append(e)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len({a.id for a in answers}) == 1
    # The runs the losing requests made were removed with their failed insert.
    assert _runs(server, experiment) == [answers[0].id]


def test_a_submission_whose_answer_is_lost_is_sent_again_and_makes_one_job(
    sqlite_server: Server, tmp_path: Path
) -> None:
    experiment = _experiment(sqlite_server)
    with TcpProxy(target_port=sqlite_server.port) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"
        with Client(url, token=sqlite_server.token, retry_for_s=30) as client:
            request = _request(client, tmp_path, experiment, None)
            proxy.lose_next_answer()
            job = client.submit_job(request)
        assert proxy.answers_lost == 1
    assert _runs(sqlite_server, experiment) == [job.id]
