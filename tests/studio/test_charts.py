"""Charts you can read (issue 14, items 2 and 8): sampled histories in one request, grouping,
filter, hover values, smoothing, log scale, x axes; live jobs ask only for new values; the
System tab with MLflow's system metrics; step durations in the timeline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from playwright.sync_api import Page, Request, expect

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import final_job, make_project
from tests.servers import Server, auth_headers

STEPS = 1200  # past the 500 values a chart line is sampled to
CHARTED = f"""\
import time
import mlflow
from mlflow.entities import Metric

with mlflow.start_run() as run:
    now = int(time.time() * 1000)
    metrics = []
    for s in range({STEPS}):
        metrics += [Metric("train/loss", 1 / (s + 1), now + s, s),
                    Metric("val/loss", 2 / (s + 1), now + s, s)]
    # Below zero and NaN: a log scale leaves the first out, every scale the second.
    metrics += [Metric("val/margin", v, now + i, i) for i, v in enumerate([-1.0, 0.5, 2.0, 4.0])]
    metrics += [Metric("train/acc", float("nan"), now, 0), Metric("train/acc", 0.9, now + 1, 1)]
    metrics += [Metric("lr", 0.1, now, 0)]
    client = mlflow.MlflowClient()
    for i in range(0, len(metrics), 1000):
        client.log_batch(run.info.run_id, metrics=metrics[i : i + 1000])
    time.sleep(4)  # long enough for a few samples of the machine
"""


@dataclass
class Charted:
    on: str  # system metrics recorded every half second
    off: str  # MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING=false


def _submit(project: Path, env: dict[str, str]) -> str:
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "cpu", "USE_CONDA": False, "ENV_VARS": env},
    )
    return str(run.run_id)


@pytest.fixture(scope="module")
def charted(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Charted:
    project = make_project(tmp_path_factory.mktemp("charted"), CHARTED)
    fast = {"MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5"}
    # The job's own setting wins over its runner's (the tests' runners record none).
    on = _submit(project, {**fast, "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "true"})
    off = _submit(project, {**fast, "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"})
    for run_id in (on, off):
        assert final_job(client, run_id).status == JobStatus.COMPLETED
    return Charted(on=on, off=off)


def test_charts_are_grouped_sampled_filtered_and_read_on_hover(
    page: Page, workspace: Server, charted: Charted, screenshots: Path
) -> None:
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/studio/metric-history" in r.url else None)
    page.goto(f"{workspace.url}/studio/jobs/{charted.on}#metrics")
    panel = page.locator("#charts")
    expect(panel).to_have_attribute("data-ready", "5")
    # One request for every chart, not one per metric.
    assert len(asked) == 1, asked
    groups = panel.locator("section.chart-group")
    expect(groups).to_have_count(3)
    assert [g.get_attribute("data-group") for g in groups.all()] == ["train", "val", ""]
    train = panel.locator("section[data-group='train'] .chart")
    assert [c.get_attribute("data-metric") for c in train.all()] == ["train/acc", "train/loss"]
    # System metrics have their own tab.
    expect(panel.locator(".chart[data-metric^='system/']")).to_have_count(0)

    loss = panel.locator(".chart[data-metric='train/loss']")
    points = int(loss.get_attribute("data-points") or 0)
    assert 400 < points <= 500, points
    expect(loss.locator(".sampled")).to_contain_text(f"of {STEPS:,} values")
    # NaN is a gap, not a zero.
    expect(panel.locator(".chart[data-metric='train/acc']")).to_have_attribute("data-drawn", "1")

    # Hover values, for a single run too.
    box = loss.locator("canvas").bounding_box()
    assert box
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    values = loss.locator(".u-legend .u-value")
    expect(values.nth(0)).to_have_text(re.compile(r"^\d+$"))  # the step under the cursor
    expect(values.nth(1)).to_have_text(re.compile(r"^\d\.\d+"))  # the loss there
    page.screenshot(path=str(screenshots / "job-charts.png"), full_page=True)

    page.fill("#metrics .chart-filter", "VAL/")
    expect(loss).to_be_hidden()
    expect(panel.locator(".chart[data-metric='val/loss']")).to_be_visible()
    expect(panel.locator("section[data-group='train']")).to_be_hidden()
    expect(panel).to_have_attribute("data-shown", "2")
    page.fill("#metrics .chart-filter", "")
    expect(panel).to_have_attribute("data-shown", "5")

    margin = panel.locator(".chart[data-metric='val/margin']")
    expect(margin).to_have_attribute("data-drawn", "4")
    page.check("#metrics .chart-log")
    expect(margin).to_have_attribute("data-drawn", "3")
    page.uncheck("#metrics .chart-log")
    expect(margin).to_have_attribute("data-drawn", "4")

    # Smoothing draws the smoothed line over the raw one, which stays in the legend.
    page.locator("#metrics .chart-smoothing").fill("0.9")
    expect(loss.locator(".u-legend")).to_contain_text("(raw)")
    page.locator("#metrics .chart-smoothing").fill("0")
    expect(loss.locator(".u-legend")).not_to_contain_text("(raw)")

    page.select_option("#metrics .chart-axis", "relative")
    expect(loss.locator(".u-legend")).to_contain_text("since start")
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    expect(values.nth(0)).to_have_text(re.compile(r"^[\d.]+ s$"))
    page.select_option("#metrics .chart-axis", "wall")
    expect(loss.locator(".u-legend")).to_contain_text("time")
    # Switching views draws from what the page holds: nothing asked again.
    assert len(asked) == 1, asked


def test_a_live_job_asks_only_for_values_logged_since(
    page: Page, workspace: Server, running_job: str
) -> None:
    asked: list[Request] = []
    page.on("request", lambda r: asked.append(r) if "/studio/metric-history" in r.url else None)
    page.goto(f"{workspace.url}/studio/jobs/{running_job}#metrics")
    chart = page.locator(".chart[data-metric='loss']")
    # The job's Python imports MLflow before its first value: seconds on a loaded machine.
    expect(chart.locator("canvas")).to_be_visible(timeout=30_000)
    points = int(chart.get_attribute("data-points") or 0)
    expect(chart).not_to_have_attribute("data-points", str(points), timeout=20_000)
    assert "since=" not in asked[0].url
    later = [r for r in asked[1:] if "since=" in r.url]
    assert later, [r.url for r in asked]
    # Each later answer holds only the values logged since the one before: a few, not all.
    body = later[-1].response()
    assert body is not None
    values = body.json()["runs"][running_job].get("loss", {"step": []})["step"]
    assert len(values) < int(chart.get_attribute("data-points") or 0), values


def test_the_system_tab_charts_the_machine_and_can_be_turned_off(
    page: Page, workspace: Server, charted: Charted, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{charted.on}#system")
    panel = page.locator("#system-charts")
    for key in (
        "system/cpu_utilization_percentage",
        "system/system_memory_usage_megabytes",
        "system/disk_usage_percentage",
        "system/network_receive_megabytes",
    ):
        expect(panel.locator(f".chart[data-metric='{key}'] canvas")).to_be_visible()
    expect(page.locator("#no-system-metrics")).to_be_hidden()
    page.screenshot(path=str(screenshots / "job-system.png"), full_page=True)
    # The Overview's latest metrics are the job's own.
    expect(page.locator("#overview")).not_to_contain_text("system/")

    # Durations of the timeline's steps: from each event to the next.
    took = page.locator("#timeline .took")
    expect(took.first).to_have_text(re.compile(r"^[\d.]+ s$|^\d+m \d\ds$"))
    assert took.count() == page.locator("#timeline li").count() - 1

    page.goto(f"{workspace.url}/studio/jobs/{charted.off}#system")
    expect(page.locator("#no-system-metrics")).to_be_visible()
    expect(page.locator("#system-charts")).to_have_attribute("data-ready", "0")


@pytest.fixture
def hostile_name(workspace: Server, charted: Charted) -> Iterator[str]:
    name = "<img src=x onerror=\"document.title='pwned'\">&amp;"
    mlflow.set_tracking_uri(workspace.url)
    MlflowClient().set_tag(charted.off, "mlflow.runName", name)
    yield name
    MlflowClient().set_tag(charted.off, "mlflow.runName", "off")


def test_compare_charts_both_runs_with_hostile_names_as_text(
    page: Page, workspace: Server, charted: Charted, hostile_name: str
) -> None:
    page.goto(f"{workspace.url}/studio/compare?ids={charted.on},{charted.off}")
    box = page.locator("#compare-charts")
    loss = box.locator(".chart[data-metric='val/loss']")
    expect(loss).to_have_attribute("data-lines", "2")
    expect(loss.locator(".u-legend")).to_contain_text(hostile_name)
    expect(box.locator("img")).to_have_count(0)
    assert page.title() != "pwned"


def test_the_history_answer_is_small_and_compressed(workspace: Server, charted: Charted) -> None:
    with httpx.Client(base_url=workspace.url, headers=auth_headers(workspace)) as http:
        response = http.get("/studio/metric-history", params={"run": charted.on, "system": "false"})
    response.raise_for_status()
    assert response.headers["content-encoding"] == "gzip"
    body = response.json()
    runs = body["runs"][charted.on]
    assert sorted(runs) == ["lr", "train/acc", "train/loss", "val/loss", "val/margin"]
    loss = runs["train/loss"]
    assert loss["total"] == STEPS
    assert loss["step"][0] == 0 and loss["step"][-1] == STEPS - 1
    assert len(loss["step"]) == len(loss["time"]) == len(loss["value"]) <= body["points"]
    assert runs["train/acc"]["value"] == [None, 0.9]


def test_compare_an_experiment_by_mlflow_search_and_say_when_the_limit_cuts(
    page: Page, workspace: Server
) -> None:
    # 101 runs logged straight to MLflow (no jobs): one more than the page compares.
    mlflow.set_tracking_uri(workspace.url)
    client = MlflowClient()
    experiment = client.create_experiment("many-runs")
    for i in range(101):
        run = client.create_run(experiment, run_name=f"r{i:03d}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("m", float(i), 0, 0)],
            params=[Param("i", str(i)), Param("half", str(i % 2))],
        )
    page.goto(f"{workspace.url}/studio/compare")
    page.select_option("#compare-ask select[name=experiment]", experiment)
    page.click("#compare-ask button[type=submit]")
    expect(page.locator("#compare-cut")).to_contain_text("only the first 100 are compared")
    expect(page.locator("#compare-legend li")).to_have_count(100)

    page.fill("#compare-ask input[name=filter]", "metrics.m < 10 and params.half = '1'")
    page.click("#compare-ask button[type=submit]")
    expect(page.locator("#compare-cut")).to_have_count(0)
    expect(page.locator("#compare-legend li")).to_have_count(5)  # 1, 3, 5, 7, 9
    expect(page.locator("#compare-set")).to_have_attribute("data-best", re.compile(".+"))
    expect(page.locator("#best-note")).to_contain_text("best: r001, m = 1")
    expect(page.locator("#scatter circle")).to_have_count(5)

    page.fill("#compare-ask input[name=filter]", "metrics.m <<< 1")
    page.click("#compare-ask button[type=submit]")
    expect(page.locator("#compare-error")).to_contain_text("is not MLflow search syntax")
    expect(page.locator("#compare-error")).to_contain_text("write it as e.g.")
