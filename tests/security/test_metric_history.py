"""The studio's metric histories (/studio/metric-history): readers only, bounded answers, and
names and filters taken as data, never as SQL or markup."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from tests.server.test_auth import new_token
from tests.servers import Server, fast_workspace

ROUTE = "/studio/metric-history"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("metric-history"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def run_id(server: Server) -> Iterator[str]:
    mlflow.set_tracking_uri(server.url)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_TOKEN", server.token or "")
        client = MlflowClient(server.url)
        experiment = client.create_experiment("history")
        run = client.create_run(experiment, run_name="<script>alert(1)</script>")
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[
                Metric("loss", 1.0, now, 0),
                Metric("loss", math.nan, now + 1, 1),
                Metric("loss", math.inf, now + 2, 2),
                Metric("system/cpu_utilization_percentage", 5.0, now, 0),
            ],
        )
        yield run.info.run_id
    mlflow.set_tracking_uri(None)


def test_only_a_signed_in_reader_reads_histories(server: Server, run_id: str) -> None:
    with httpx.Client(base_url=server.url) as http:
        assert http.get(ROUTE, params={"run": run_id}).status_code == 401
        bad = {"Authorization": "Bearer not-a-token"}
        assert http.get(ROUTE, params={"run": run_id}, headers=bad).status_code == 401
        reader = {"Authorization": f"Bearer {new_token(server, 'reader')}"}
        answer = http.get(ROUTE, params={"run": run_id}, headers=reader)
    assert answer.status_code == 200
    runs = answer.json()["runs"][run_id]
    # NaN is a null (MLflow keeps infinity as the largest float): JSON any parser reads.
    assert runs["loss"]["value"][:2] == [1.0, None]
    assert "NaN" not in answer.text and "Infinity" not in answer.text
    assert "system/cpu_utilization_percentage" in runs


def test_bad_asks_get_one_sentence_and_nothing_unbounded(server: Server, run_id: str) -> None:
    headers = {"Authorization": f"Bearer {new_token(server, 'reader')}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        cases = {
            (): (400, "Name at least one run"),
            (("run", run_id), ("points", "1")): (400, "give 10 to 5000"),
            (("run", run_id), ("points", "100000000")): (400, "give 10 to 5000"),
            tuple(("run", f"{i:032x}") for i in range(101)): (400, "at most 100"),
            (("run", "0" * 32),): (404, "No run"),
            (("run", "' OR 1=1 --"),): (404, "No run"),
        }
        for params, (status, message) in cases.items():
            answer = http.get(ROUTE, params=list(params))
            assert answer.status_code == status, (params, answer.text)
            assert message in answer.json()["message"], answer.text

        # Filters are bound values: a quote or a LIKE wildcard matches nothing, not everything.
        for key in ("' OR '1'='1", "%", "_oss"):
            answer = http.get(ROUTE, params={"run": run_id, "key": key})
            assert answer.json()["runs"] == {run_id: {}}, key
        only = http.get(ROUTE, params={"run": run_id, "system": "true"}).json()["runs"][run_id]
        assert list(only) == ["system/cpu_utilization_percentage"]


def test_a_history_logged_without_steps_is_thinned_too(server: Server, run_id: str) -> None:
    # 30 values all at step 0 (a metric logged without steps): still at most `points` values,
    # the first and the last kept, in logging order.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MLFLOW_TRACKING_TOKEN", server.token or "")
        now = int(time.time() * 1000)
        MlflowClient(server.url).log_batch(
            run_id, metrics=[Metric("stepless", float(i), now + i, 0) for i in range(30)]
        )
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        answer = http.get(ROUTE, params={"run": run_id, "key": "stepless", "points": 10})
    line = answer.json()["runs"][run_id]["stepless"]
    assert line["total"] == 30
    assert len(line["value"]) <= 10
    assert line["value"][0] == 0.0 and line["value"][-1] == 29.0
    assert line["value"] == sorted(line["value"])


def test_an_answer_kept_for_reuse_follows_the_history(server: Server, run_id: str) -> None:
    # The server keeps whole answers while the histories are unchanged: a value logged since
    # must show in the next answer, and a repeated ask must equal the first.
    headers = {"Authorization": f"Bearer {server.token}"}
    params = {"run": run_id, "key": "growing", "points": 10}
    with httpx.Client(base_url=server.url, headers=headers) as http:
        with pytest.MonkeyPatch.context() as env:
            env.setenv("MLFLOW_TRACKING_TOKEN", server.token or "")
            client = MlflowClient(server.url)
            client.log_metric(run_id, "growing", 1.0, step=0)
            first = http.get(ROUTE, params=params).json()
            assert http.get(ROUTE, params=params).json() == first
            client.log_metric(run_id, "growing", 2.0, step=1)
        line = http.get(ROUTE, params=params).json()["runs"][run_id]["growing"]
    assert first["runs"][run_id]["growing"]["value"] == [1.0]
    assert line["value"] == [1.0, 2.0]


def test_a_growing_history_is_the_kept_answer_and_what_came_since(
    server: Server, run_id: str
) -> None:
    # A live job's charts: the kept (sampled) answer with the values logged since appended, until
    # they are more than a quarter of what was sampled; then the whole history is sampled again.
    headers = {"Authorization": f"Bearer {server.token}"}
    params = {"run": run_id, "key": "live", "points": 10}

    def log(steps: range) -> None:
        now = int(time.time() * 1000)
        metrics = [Metric("live", float(s), now + s, s) for s in steps]
        MlflowClient(server.url).log_batch(run_id, metrics=metrics)

    with (
        httpx.Client(base_url=server.url, headers=headers) as http,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("MLFLOW_TRACKING_TOKEN", server.token or "")
        log(range(40))
        sampled = http.get(ROUTE, params=params).json()["runs"][run_id]["live"]
        assert len(sampled["value"]) <= 10 and sampled["value"][-1] == 39.0
        log(range(40, 45))
        grown = http.get(ROUTE, params=params).json()["runs"][run_id]["live"]
        assert grown["total"] == 45
        assert grown["value"] == sampled["value"] + [40.0, 41.0, 42.0, 43.0, 44.0]
        assert grown["step"] == sampled["step"] + [40, 41, 42, 43, 44]
        log(range(45, 70))
        again = http.get(ROUTE, params=params).json()["runs"][run_id]["live"]
    assert again["total"] == 70
    assert len(again["value"]) <= 10 and again["value"][0] == 0.0 and again["value"][-1] == 69.0
