"""The studio in a real browser against a real workspace with real jobs: the acceptance of the
issue "Studio: web pages to watch jobs, logs, metrics, outputs and code snapshots"."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, expect

from flowyard.client import Client
from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.schemas import JobStatus
from tests.factories import make_project, unstarted_job
from tests.servers import Server, auth_headers, fast_workspace
from tests.studio.conftest import Jobs, sign_in


def shot(page: Page, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_the_jobs_list_shows_filters_sorts_and_picks(
    page: Page, workspace: Server, jobs: Jobs, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/")
    expect(page).to_have_url(re.compile(r"/studio/jobs$"))
    rows = page.locator("tr[data-job]")
    expect(rows).to_have_count(3)
    finished = page.locator(f"tr[data-job='{jobs.finished.id}']")
    expect(finished.locator(".badge")).to_have_text("completed")
    expect(finished).to_contain_text("cpu")
    expect(finished).to_contain_text("studio-tests")
    # Key parameters and latest metrics as columns.
    expect(page.locator("thead")).to_contain_text("alpha")
    expect(page.locator("thead")).to_contain_text("rmse")
    expect(finished).to_contain_text("0.3")
    shot(page, screenshots, "jobs")

    page.select_option("select[name=status]", "failed")
    expect(rows).to_have_count(1)
    expect(page.locator(f"tr[data-job='{jobs.failed.id}']")).to_be_visible()
    page.goto(f"{workspace.url}/studio/jobs?status=canceled&user=nobody")
    expect(page.locator(".empty")).to_contain_text("No jobs match these filters")

    page.goto(f"{workspace.url}/studio/jobs?sort=submitted&order=asc")
    expect(rows.first).to_have_attribute("data-job", jobs.finished.id)
    page.click("a.sort:has-text('Submitted')")
    expect(rows.first).to_have_attribute("data-job", jobs.failed.id)

    page.set_viewport_size({"width": 390, "height": 844})
    shot(page, screenshots, "jobs-phone")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_a_running_job_tails_its_log_and_charts_its_metric(
    page: Page, workspace: Server, running_job: str, screenshots: Path
) -> None:
    run_id = running_job
    page.goto(f"{workspace.url}/studio/jobs/{run_id}#logs")
    expect(page.locator("#status .badge")).to_have_text("running")
    log = page.locator("#log")
    # The job's Python imports MLflow before its first line: seconds on a loaded machine.
    expect(log).to_contain_text("line 2", timeout=30_000)
    last = int(re.findall(r"line (\d+)", log.inner_text())[-1])
    # New lines arrive without reloading the page.
    expect(log).to_contain_text(f"line {last + 4}", timeout=20_000)
    page.fill("#log-search", f"line {last}")
    expect(page.locator("#log-matches")).to_contain_text("matching line")
    expect(page.locator("#log-results mark").first).to_have_text(f"line {last}")
    page.fill("#log-search", "")
    shot(page, screenshots, "job-logs")

    page.click("a[href='#metrics']")
    chart = page.locator(".chart[data-metric='loss']")
    expect(chart.locator("canvas")).to_be_visible()
    points = int(chart.get_attribute("data-points") or 0)
    assert points > 0
    # The chart keeps growing while the job runs.
    expect(chart).not_to_have_attribute("data-points", str(points), timeout=20_000)
    shot(page, screenshots, "job-metrics")


def test_cancel_from_the_job_page(
    page: Page, workspace: Server, client: Client, running_job: str, screenshots: Path
) -> None:
    run_id = running_job
    page.goto(f"{workspace.url}/studio/jobs/{run_id}")
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel job …?"
    page.click("#cancel")
    expect(page.locator("#status .badge")).to_have_text("canceled", timeout=60_000)
    # Once final, the page shows the reason in its timeline and error box.
    expect(page.locator("#timeline")).to_contain_text("canceled by owner")
    expect(page.locator("#error-headline")).to_have_text("Canceled by owner")
    assert client.get_job(run_id).status == JobStatus.CANCELED
    expect(page.locator("#cancel")).to_have_count(0)
    shot(page, screenshots, "job-canceled")


def test_outputs_list_preview_and_download(
    page: Page, workspace: Server, jobs: Jobs, tmp_path: Path, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{jobs.finished.id}#outputs")
    # Its ./outputs, and the log the runner keeps with the run.
    files = page.locator("#artifact-list li[data-path]")
    expect(files).to_have_count(3)
    expect(page.locator("li[data-path='logs/std_log.txt']")).to_have_count(1)
    page.locator("li[data-path='outputs/metrics.json'] button").click()
    expect(page.locator("#preview > ul.json")).to_contain_text("rmse")
    shot(page, screenshots, "job-outputs")
    with page.expect_download() as info:
        page.locator("li[data-path='outputs/model.pkl'] a:has-text('Download')").click()
    saved = tmp_path / "model.pkl"
    info.value.save_as(saved)
    expected = Path(MlflowClient().download_artifacts(jobs.finished.id, "outputs/model.pkl"))
    assert saved.read_bytes() == expected.read_bytes()


def test_snapshot_tree_file_view_and_zip(
    page: Page, workspace: Server, jobs: Jobs, tmp_path: Path, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{jobs.finished.id}#snapshot")
    page.click("#snapshot .tree a:has-text('train.py')")
    expect(page.locator("h1.path")).to_have_text("train.py")
    code = page.locator("#file-view")
    expect(code).to_contain_text("ElasticNet(")
    # Highlighted on the server: keywords carry Pygments' classes.
    expect(code.locator("span.kn").first).to_be_visible()
    shot(page, screenshots, "snapshot-file")
    page.go_back()
    with page.expect_download() as info:
        page.click("#snapshot-zip")
    archive = tmp_path / "snapshot.zip"
    info.value.save_as(archive)
    with zipfile.ZipFile(archive) as zf:
        assert {"MLproject", "train.py", "python_env.yaml"} <= set(zf.namelist())
        assert b"ElasticNet" in zf.read("train.py")


def test_compare_two_jobs(page: Page, workspace: Server, jobs: Jobs, screenshots: Path) -> None:
    page.goto(f"{workspace.url}/studio/jobs")
    page.check(f"input[value='{jobs.finished.id}']")
    page.check(f"input[value='{jobs.other.id}']")
    page.click("#compare-selected")
    expect(page).to_have_url(re.compile(r"/studio/compare\?"))
    alpha = page.locator("tr.param.differs", has_text="alpha")
    expect(alpha).to_contain_text("0.3")
    expect(alpha).to_contain_text("0.7")
    chart = page.locator(".chart[data-metric='rmse']")
    # Two runs' histories in one chart: 5 + 8 steps.
    expect(chart).to_have_attribute("data-points", "13")
    page.check("#only-diff")
    expect(page.locator("tr.param.same").first).to_be_hidden()
    shot(page, screenshots, "compare")


def test_a_failed_job_shows_its_error_and_empty_tabs(
    page: Page, workspace: Server, jobs: Jobs, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{jobs.failed.id}")
    box = page.locator("#error-box")
    expect(box).to_contain_text("ValueError")
    expect(box).to_contain_text("alpha must be below 1, got 5")
    expect(box.locator("pre.traceback")).to_contain_text("check(5)")
    expect(page.locator("#timeline")).to_contain_text("failed")
    shot(page, screenshots, "job-failed")
    page.click("a[href='#metrics']")
    expect(page.locator("#no-metrics")).to_be_visible()
    page.click("a[href='#outputs']")
    expect(page.locator("li[data-path='logs/std_log.txt']")).to_have_count(1)
    expect(page.locator("#artifact-list li[data-path^='outputs/']")).to_have_count(0)
    page.click("a[href='#logs']")
    expect(page.locator("#log")).to_contain_text("ValueError")


def test_computes_page_shows_slots_queue_and_health(
    page: Page, workspace: Server, jobs: Jobs, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/computes")
    row = page.locator("tr[data-compute='cpu']")
    expect(row).to_contain_text("process")
    expect(row).to_contain_text("/ 4")
    expect(row.locator(".health")).to_contain_text("healthy")
    expect(row.locator(".resources")).to_contain_text("CPUs")
    # local comes first, as the API lists it.
    expect(page.locator("tbody tr").first).to_have_attribute("data-local", "")
    expect(page.locator("tr[data-local]")).to_contain_text("each submitting machine")
    shot(page, screenshots, "computes")


def test_an_unknown_job_is_a_404_page(page: Page, workspace: Server) -> None:
    response = page.goto(f"{workspace.url}/studio/jobs/0123456789abcdef0123456789abcdef")
    assert response is not None and response.status == 404
    expect(page.locator("h1")).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("does not exist in this workspace")
    response = page.goto(f"{workspace.url}/studio/no/such/page")
    assert response is not None and response.status == 404


@pytest.fixture(scope="module")
def empty_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = fast_workspace(tmp_path_factory.mktemp("studio-empty"))
    yield server
    server.stop()


def test_an_empty_workspace_says_how_to_start(
    page: Page, empty_workspace: Server, screenshots: Path
) -> None:
    sign_in(page, empty_workspace)
    page.goto(f"{empty_workspace.url}/studio/jobs")
    expect(page.locator(".empty")).to_contain_text("No jobs yet")
    expect(page.locator(".empty")).to_contain_text('backend="flowyard"')
    shot(page, screenshots, "jobs-empty")
    page.goto(f"{empty_workspace.url}/studio/computes")
    expect(page.locator(".empty")).to_contain_text("No compute targets are registered")
    page.goto(f"{empty_workspace.url}/studio/compare")
    expect(page.locator(".empty")).to_contain_text("Pick two or more jobs")


def test_a_local_job_explains_why_it_cannot_be_run_again_here(
    page: Page, workspace: Server, client: Client, tmp_path: Path
) -> None:
    run = mlflow.projects.run(
        str(make_project(tmp_path / "local", "print('hello')\n")),
        backend="flowyard",
        backend_config={"COMPUTE": "local", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    page.goto(f"{workspace.url}/studio/jobs/{run.run_id}")
    page.click("#rerun-open")
    expect(page.locator("#rerun-dialog")).to_contain_text("ran on the machine that submitted it")
    expect(page.locator("#rerun-form")).to_have_count(0)
    with pytest.raises(InvalidRequestError, match="cannot start a runner"):
        client.request("POST", f"/jobs/{run.run_id}/rerun", json={"parameters": {}})


def test_the_studio_signs_in_with_a_token_and_guards_its_session(
    page: Page, workspace: Server, jobs: Jobs, screenshots: Path
) -> None:
    context = page.context
    cookie_name = f"flowyard_session_{workspace.port}"
    context.clear_cookies()
    try:
        # Signed out: any page leads to the sign-in form, and back to that page after it.
        target = f"/studio/jobs/{jobs.finished.id}"
        page.goto(workspace.url + target)
        expect(page).to_have_url(re.compile(r"/studio/login\?next="))
        page.fill("input[name=token]", "fy_0123456789abcdef_" + "x" * 43)
        page.click("button[type=submit]")
        expect(page.locator(".login .error")).to_contain_text("unknown, expired or revoked")
        page.fill("input[name=token]", workspace.token or "")
        page.click("button[type=submit]")
        expect(page).to_have_url(workspace.url + target)
        shot(page, screenshots, "signed-in")
        (cookie,) = [c for c in context.cookies(workspace.url) if c["name"] == cookie_name]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        assert workspace.token and workspace.token not in cookie["value"]  # its id, signed

        # The cookie alone does not let another site change anything (CSRF).
        jar = {cookie_name: cookie["value"]}
        cancel = f"{workspace.url}/api/flowyard/v1/jobs/{jobs.finished.id}/cancel"
        forged = httpx.post(cancel, cookies=jar, headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403 and "CSRF" in forged.json()["message"]
        csrf = page.locator('meta[name="csrf-token"]').get_attribute("content")
        assert csrf
        own = httpx.post(cancel, cookies=jar, headers={"X-CSRF-Token": csrf})
        assert own.status_code not in (401, 403)  # a finished job: refused on its merits
        # Reading with the cookie needs no CSRF token.
        assert httpx.get(f"{workspace.url}/api/flowyard/v1/jobs", cookies=jar).status_code == 200

        page.click(".signout button")
        expect(page).to_have_url(re.compile(r"/studio/login"))
        page.goto(f"{workspace.url}/studio/jobs")
        expect(page).to_have_url(re.compile(r"/studio/login"))
    finally:
        context.clear_cookies()


def test_mlflow_ui_works_with_the_studio_sign_in(page: Page, workspace: Server) -> None:
    """MLflow's own UI, served by the same workspace, uses the studio's session: its pages and
    its API calls (GETs, and POST searches sent from the same origin) all go through."""
    denied: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda r: denied.append((r.status, r.url)) if r.status in (401, 403) else None,
    )
    page.goto(f"{workspace.url}/")
    expect(page.get_by_role("link", name="Default")).to_be_visible(timeout=60_000)
    assert denied == []


def test_delete_from_the_job_page_asks_first(
    page: Page, workspace: Server, client: Client, screenshots: Path
) -> None:
    run_id, _token = unstarted_job(workspace.url, auth_headers(workspace))
    page.goto(f"{workspace.url}/studio/jobs/{run_id}")
    # A job that has not ended offers a cancel, never a delete.
    expect(page.locator("#delete")).to_have_count(0)
    client.cancel_job(run_id)
    page.reload()
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss() if len(asked) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.click("#delete")
    assert asked and "cannot be undone" in asked[0]
    assert client.get_job(run_id).status == JobStatus.CANCELED  # dismissed: nothing deleted
    shot(page, screenshots, "job-delete")
    page.click("#delete")
    page.wait_for_url(f"{workspace.url}/studio/jobs")
    with pytest.raises(NotFoundError):
        client.get_job(run_id)
