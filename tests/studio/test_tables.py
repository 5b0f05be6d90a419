"""The studio's tables in a real browser against a real workspace: the experiment table (MLflow
search, sorting, column chooser, lowest and highest of each metric), the jobs table's live
refresh in place, the page chrome (icon, skip link, compute names that never wrap) and the links
between the studio and MLflow's UI (issue 14, items 1, 9 and 10)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, expect

from flowyard.client import Client
from tests.factories import EXAMPLE, create_compute, final_job
from tests.servers import Server
from tests.studio.conftest import Jobs

HOSTILE_NAME = '<img src=x onerror="window.pwned=1">run & co'
LONG_NAME = "lr_sweep_" + "_".join(f"alpha_0.{i:03d}_seed_{i:07d}" for i in range(6))
HOSTILE_VALUE = "<script>window.pwned=2</script>"


@dataclass
class Table:
    experiment_id: str
    cluster_job: str
    hostile_run: str


@pytest.fixture(scope="module")
def table(workspace: Server, client: Client, jobs: Jobs) -> Table:
    """Besides the module's three jobs: one on a compute named "cpu-cluster", and a run logged
    straight through MLflow (no job) with a hostile name and parameter."""
    create_compute(workspace, "cpu-cluster")
    run = mlflow.projects.run(
        str(EXAMPLE),
        parameters={"alpha": 0.5, "steps": 3},
        # A long name with no place to break squeezes the other columns to their narrowest.
        run_name=LONG_NAME,
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "cpu-cluster", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    cluster = final_job(client, str(run.run_id))
    ml = MlflowClient()
    experiment_id = jobs.finished.experiment_id
    hostile = ml.create_run(experiment_id, run_name=HOSTILE_NAME)
    ml.log_param(hostile.info.run_id, "alpha", HOSTILE_VALUE)
    ml.log_metric(hostile.info.run_id, "rmse", 1000.0)
    ml.set_terminated(hostile.info.run_id)
    return Table(experiment_id, cluster.id, hostile.info.run_id)


def rmse(client: Client, run_id: str) -> float:
    return float(MlflowClient().get_run(run_id).data.metrics["rmse"])


def test_experiment_table_filters_sorts_and_links_with_mlflow_search(
    page: Page, workspace: Server, jobs: Jobs, table: Table, client: Client
) -> None:
    page.goto(f"{workspace.url}/studio/experiments")
    page.click("a:has-text('studio-tests')")
    expect(page).to_have_url(re.compile(rf"/studio/experiments/{table.experiment_id}$"))
    rows = page.locator("#experiment-table tbody tr")
    expect(rows).to_have_count(5)  # three jobs, the cpu-cluster job, the hostile run

    # MLflow's own syntax, as MLflow's UI takes it.
    low = rmse(client, jobs.finished.id)
    page.fill("input[name=filter]", f"metrics.rmse <= {low} and params.alpha = '0.3'")
    page.click("button:has-text('Search')")
    expect(rows).to_have_count(1)
    link = rows.first.locator("td.name a")
    expect(link).to_have_attribute("href", f"/studio/jobs/{jobs.finished.id}")

    # A filter MLflow refuses: one sentence naming the problem, the filter kept to fix.
    page.fill("input[name=filter]", "metrics.rmse <")
    with page.expect_response(re.compile(r"/studio/experiments/")) as answer:
        page.click("button:has-text('Search')")
    assert answer.value.status == 400
    error = page.locator("#filter-error")
    expect(error).to_contain_text("The filter is not MLflow search syntax")
    expect(error).to_contain_text("metrics.rmse < 0.7")
    expect(page.locator("input[name=filter]")).to_have_value("metrics.rmse <")

    # Sorting: ascending on the first click, then descending.
    page.goto(f"{workspace.url}/studio/experiments/{table.experiment_id}")
    page.click("th[data-col='metrics.rmse'] a")
    expect(page).to_have_url(re.compile(r"order=asc"))
    values = [rmse(client, i) for i in (jobs.finished.id, jobs.other.id, table.cluster_job)]
    best = min(values)
    first = rows.first.locator("td[data-col='metrics.rmse']")
    expect(first).to_contain_text(f"{best:.4g}")
    expect(first.locator(".best")).to_have_count(1)
    page.click("th[data-col='metrics.rmse'] a")
    expect(page).to_have_url(re.compile(r"order=desc"))
    expect(rows.first).to_have_attribute("data-run", table.hostile_run)
    # The lowest and highest rmse over the runs, the best (lowest, for an error) marked.
    stats = page.locator("tr.stat td[data-col='metrics.rmse']")
    expect(stats.nth(0)).to_have_text(re.compile(rf"{re.escape(f'{best:.4g}')}"))
    expect(stats.nth(0).locator(".best")).to_have_count(1)
    expect(stats.nth(1)).to_have_text("1000")

    # Text search on run names; the hostile name and value are text, never markup.
    page.fill("input[name=name]", "onerror")
    page.click("button:has-text('Search')")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td.name")).to_have_text(HOSTILE_NAME)
    expect(rows.first.locator("td[data-col='params.alpha']")).to_have_text(HOSTILE_VALUE)
    # A run that is no job opens in MLflow's UI.
    expect(rows.first.locator("td.name a")).to_have_attribute(
        "href", f"/#/experiments/{table.experiment_id}/runs/{table.hostile_run}"
    )
    assert page.evaluate("window.pwned") is None
    assert page.locator("#experiment-table img, #experiment-table script").count() == 0

    # Durations and times that read well; the exact time, with its zone, on hover.
    page.goto(f"{workspace.url}/studio/experiments/{table.experiment_id}")
    row = page.locator(f"tr[data-run='{jobs.finished.id}']")
    started = row.locator("td[data-col='attributes.start_time'] time")
    expect(started).to_have_text(re.compile(r"ago|now|second|minute"))
    title = started.get_attribute("title") or ""
    assert re.search(r"(UTC|GMT|[A-Z]{3,4})", title), title
    duration = row.locator("td[data-col='duration']")
    expect(duration).to_have_text(re.compile(r"^\d+( min \d\d)? s$|^\d+ ms$"))


def test_which_is_best_is_the_readers_to_flip(page: Page, workspace: Server, table: Table) -> None:
    # The guess (lower is better for an error) flipped by the reader, kept across a reload.
    page.goto(f"{workspace.url}/studio/experiments/{table.experiment_id}")
    stats = page.locator("tr.stat td[data-col='metrics.rmse']")
    hostile = page.locator(f"tr[data-run='{table.hostile_run}'] td[data-col='metrics.rmse']")
    flip = stats.nth(0).locator("button.better")
    expect(flip).to_have_text("↓ better")
    expect(hostile.locator(".best")).to_have_count(0)
    flip.click()
    for _ in range(2):
        expect(flip).to_have_text("↑ better")
        expect(stats.nth(0).locator(".best")).to_have_count(0)
        expect(stats.nth(1).locator(".best")).to_have_count(1)
        expect(hostile.locator(".best")).to_have_count(1)  # its 1000 is the highest
        page.reload()
    flip.click()
    expect(stats.nth(0).locator(".best")).to_have_count(1)
    expect(hostile.locator(".best")).to_have_count(0)


def test_column_chooser_is_kept_per_experiment(page: Page, workspace: Server, table: Table) -> None:
    url = f"{workspace.url}/studio/experiments/{table.experiment_id}"
    page.goto(url)
    page.evaluate("localStorage.clear()")
    page.reload()
    alpha = page.locator("th[data-col='params.alpha']")
    expect(alpha).to_be_visible()
    page.click("#columns summary")
    page.uncheck("#columns input[value='params.alpha']")
    expect(alpha).to_be_hidden()
    expect(page.locator("td[data-col='params.alpha']").first).to_be_hidden()
    page.reload()
    expect(alpha).to_be_hidden()
    expect(page.locator("#columns input[value='params.alpha']")).not_to_be_checked()
    # Another experiment keeps its own choice.
    other = MlflowClient().create_experiment("studio-tests-other")
    run = MlflowClient().create_run(other, run_name="plain")
    MlflowClient().log_param(run.info.run_id, "alpha", "1")
    page.goto(f"{workspace.url}/studio/experiments/{other}")
    expect(page.locator("th[data-col='params.alpha']")).to_be_visible()


def test_an_unknown_experiment_is_a_404_page(page: Page, workspace: Server) -> None:
    response = page.goto(f"{workspace.url}/studio/experiments/987654")
    assert response is not None and response.status == 404
    expect(page.locator("main")).to_contain_text("Experiment 987654 does not exist")


def test_the_jobs_table_refreshes_in_place_keeping_focus_and_selection(
    page: Page, workspace: Server, jobs: Jobs, running_job: str
) -> None:
    page.goto(f"{workspace.url}/studio/jobs")
    expect(page.locator("#live-note")).to_contain_text("Live")
    box = page.locator(f"tr[data-job='{jobs.finished.id}'] input[name=ids]")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    # Select the text of another row's run name, as a reader copying it would.
    page.evaluate(
        """(id) => {
          const cell = document.querySelector(`tr[data-job='${id}'] td.name a`);
          const range = document.createRange();
          range.selectNodeContents(cell);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
        }""",
        jobs.other.id,
    )
    selected = page.evaluate("getSelection().toString()")
    assert selected
    for _ in range(2):  # two live refreshes
        with page.expect_response(lambda r: "fragment=1" in r.url):
            pass
    page.wait_for_timeout(200)  # the merge runs after the answer's body is read
    assert page.evaluate("document.activeElement?.value") == jobs.finished.id
    expect(box).to_be_checked()
    assert page.evaluate("getSelection().toString()") == selected
    # The running job's row still changes: its duration is live.
    expect(page.locator(f"tr[data-job='{running_job}'] .badge")).to_have_text("running")


def test_favicon_is_served_to_anyone(workspace: Server) -> None:
    answer = httpx.get(f"{workspace.url}/favicon.ico", timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("image/")
    assert answer.content[:4] == b"\0\0\1\0"  # an ICO file


def test_skip_link_is_the_first_stop_and_compute_names_do_not_wrap(
    page: Page, workspace: Server, table: Table
) -> None:
    page.set_viewport_size({"width": 1440, "height": 900})
    try:
        page.goto(f"{workspace.url}/studio/jobs")
        page.keyboard.press("Tab")
        focused = page.locator(":focus")
        expect(focused).to_have_text("Skip to content")
        expect(focused).to_be_visible()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"
        cell = page.locator(f"tr[data-job='{table.cluster_job}'] td.compute")
        expect(cell).to_have_text("cpu-cluster")
        lines = page.evaluate(
            """(el) => { const r = document.createRange(); r.selectNodeContents(el);
                return new Set([...r.getClientRects()].map((b) => Math.round(b.top))).size; }""",
            cell.element_handle(),
        )
        assert lines == 1
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


def test_mlflow_run_page_links_back_to_the_job_under_one_user_name(
    page: Page, workspace: Server, jobs: Jobs
) -> None:
    run = MlflowClient().get_run(jobs.finished.id)
    assert run.data.tags["mlflow.user"] == jobs.finished.user
    assert f"/studio/jobs/{jobs.finished.id}" in run.data.tags["mlflow.note.content"]
    # MLflow's UI shows the description with a working link, and the same user name.
    page.goto(
        f"{workspace.url}/#/experiments/{jobs.finished.experiment_id}/runs/{jobs.finished.id}"
    )
    link = page.locator(f"a[href='/studio/jobs/{jobs.finished.id}']")
    expect(link.first).to_be_visible(timeout=60_000)
    expect(page.locator("body")).to_contain_text(jobs.finished.user)
    page.goto(f"{workspace.url}/studio/jobs/{jobs.finished.id}")
    expect(page.locator("main")).to_contain_text(jobs.finished.user)
