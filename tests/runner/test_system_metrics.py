"""The runner's recording of MLflow's system metrics for a job's run: a workspace that does not
answer at the job's end costs the job's result a bounded wait, never MLflow's minutes of retries."""

from __future__ import annotations

import time

import pytest

from flowyard.runner import system_metrics
from flowyard.runner.system_metrics import SystemMetrics
from tests.servers import free_port


def test_the_jobs_end_does_not_wait_on_a_workspace_that_is_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(system_metrics, "FINISH_WAIT_S", 1.0)
    said: list[str] = []
    # Nothing listens there: MLflow's client retries each request, with back-off, for minutes.
    monitor = SystemMetrics("0" * 32, f"http://127.0.0.1:{free_port()}", 0.2, said.append)
    monitor.start()
    deadline = time.monotonic() + 120
    while not any("recording every 0.2 s" in line for line in said):
        assert time.monotonic() < deadline, f"the monitor never started: {said}"
        time.sleep(0.05)
    time.sleep(0.5)  # a sample taken; the monitor now asks the workspace about the run
    monitor.finish()
    assert "the last samples were not logged within 1 s" in said[-1]


@pytest.mark.parametrize(
    ("job_env", "runner_env", "on"),
    [
        ({}, {}, True),
        ({"MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"}, {}, False),
        ({}, {"MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "0"}, False),
        (
            {"MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "true"},
            {"MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "off"},
            True,
        ),
    ],
)
def test_the_job_then_the_runner_say_whether_they_are_recorded(
    monkeypatch: pytest.MonkeyPatch, job_env: dict[str, str], runner_env: dict[str, str], on: bool
) -> None:
    monkeypatch.delenv("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    for name, value in runner_env.items():
        monkeypatch.setenv(name, value)
    assert system_metrics.enabled(job_env) is on
