"""The studio's artifact routes (a job's artifacts listed, and the head of one for a preview) and
its re-run form: readers may read and never re-run, a path never leaves the job's run, and an
artifact's script never runs at the workspace's origin."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow as mlflow_module
import playwright.sync_api as playwright
import pytest
from mlflow import MlflowClient

from flowyard import defaults
from flowyard.server.routers.artifacts import SIZE_HEADER
from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers
from tests.studio.conftest import CHROMIUM, CHROMIUM_ARGS, sign_in

API = defaults.API_PREFIX
PAGE = "<html><body><script>document.title = 'ran'; window.ran = true;</script>hello</body></html>"
SECRET = "the other run's secret"


@dataclass
class Runs:
    server: Server
    job: str  # a job whose run holds x.html and a link out of the run
    other: str  # another job, whose run holds secret.txt


@pytest.fixture(scope="module")
def runs(sqlite_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    folder = tmp_path_factory.mktemp("hostile-artifacts")
    (folder / "x.html").write_text(PAGE)
    (folder / "x.svg").write_text(f'<svg xmlns="http://www.w3.org/2000/svg">{PAGE}</svg>')
    (folder / "secret.txt").write_text(SECRET)
    headers = auth_headers(sqlite_server)
    job, _ = unstarted_job(sqlite_server.url, headers)
    other, _ = unstarted_job(sqlite_server.url, headers)
    mlflow_module.set_tracking_uri(sqlite_server.url)
    client = MlflowClient(sqlite_server.url)
    client.log_artifact(job, str(folder / "x.html"))
    client.log_artifact(job, str(folder / "x.svg"))
    client.log_artifact(other, str(folder / "secret.txt"))
    # A link planted in the store (by whoever can write there) leads nowhere through the studio.
    (store,) = sqlite_server.cwd.rglob(f"{job}/artifacts")
    (secret,) = sqlite_server.cwd.rglob(f"{other}/artifacts/secret.txt")
    os.symlink(secret, store / "link.txt")
    yield Runs(sqlite_server, job, other)
    mlflow_module.set_tracking_uri(None)


def get(runs: Runs, path: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(runs.server.url + path, headers=headers, timeout=30)


def test_readers_read_artifacts_but_never_rerun(runs: Runs) -> None:
    reader = new_token(runs.server, "reader")
    listed = get(runs, f"{API}/jobs/{runs.job}/artifacts", reader)
    assert listed.status_code == 200, listed.text
    assert {f["path"] for f in listed.json()["files"]} >= {"x.html", "x.svg"}
    assert get(runs, f"{API}/jobs/{runs.job}/artifacts/x.html", reader).status_code == 200
    for path in (f"{API}/jobs/{runs.job}/artifacts", f"{API}/jobs/{runs.job}/artifacts/x.html"):
        assert get(runs, path, None).status_code == 401, path
    rerun = httpx.post(
        f"{runs.server.url}{API}/jobs/{runs.job}/rerun",
        json={"parameters": {}, "run_name": "mine now", "compute": "cpu", "priority": 9},
        headers={"Authorization": f"Bearer {reader}"},
        timeout=30,
    )
    assert rerun.status_code == 403, rerun.text
    assert "reader" in rerun.json()["message"]
    # The job page does not offer a reader the re-run form, and says why.
    page = get(runs, f"/studio/jobs/{runs.job}", reader).text
    assert 'id="rerun-refused"' in page and 'id="rerun-form"' not in page
    assert 'id="rerun-refused"' not in get(runs, f"/studio/jobs/{runs.job}", runs.server.token).text


def test_a_path_outside_the_run_is_refused(runs: Runs) -> None:
    owner = runs.server.token
    base = f"{API}/jobs/{runs.job}/artifacts"
    other = f"{runs.other}/artifacts/secret.txt"
    for path in (
        f"%2E%2E/%2E%2E/{other}",  # the other run's file, beside this run's folder
        f"%252E%252E/%252E%252E/{other}",  # encoded twice
        "%2Fetc%2Fpasswd",
        "a%5C..%5C..%5Csecret.txt",
        "x%01.html",  # a control character
    ):
        response = get(runs, f"{base}/{path}", owner)
        assert response.status_code == 400, (path, response.text)
        assert SECRET not in response.text
        assert "artifact path" in response.json()["message"], path
    # Names that stay inside the run but are not its files: not found, never another's bytes.
    for path in ("secret.txt", "link.txt", f"{runs.other}/artifacts/secret.txt"):
        response = get(runs, f"{base}/{path}", owner)
        assert response.status_code == 404, (path, response.text)
        assert SECRET not in response.text
    # A model id names one of this run's logged models, or nothing.
    response = get(runs, f"{base}/secret.txt?model=m-{uuid.uuid4().hex}", owner)
    assert response.status_code == 404 and SECRET not in response.text
    # The other job's own route still serves it, head only when asked.
    head = get(runs, f"{API}/jobs/{runs.other}/artifacts/secret.txt?limit=5", owner)
    assert head.content == SECRET.encode()[:5]
    assert head.headers[SIZE_HEADER] == str(len(SECRET))


def test_an_html_artifacts_preview_is_inert(runs: Runs, tmp_path: Path) -> None:
    base = f"{API}/jobs/{runs.job}/artifacts"
    html = get(runs, f"{base}/x.html", runs.server.token)
    assert html.content == PAGE.encode()
    assert html.headers["content-type"].startswith("text/plain")
    assert html.headers["content-security-policy"] == "sandbox"
    assert html.headers["x-content-type-options"] == "nosniff"
    svg = get(runs, f"{base}/x.svg", runs.server.token)
    assert svg.headers["content-disposition"].startswith("attachment")
    assert svg.headers["content-security-policy"] == "sandbox"

    def check() -> None:
        with playwright.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
            )
            try:
                page = context.new_page()
                page.set_default_timeout(30_000)
                sign_in(page, runs.server)
                # Opened as a page of the workspace, signed in: its script does not run.
                page.goto(runs.server.url + f"{base}/x.html", wait_until="load")
                assert page.evaluate("window.ran === undefined")
                assert page.title() != "ran"
                # Previewed in the studio's Artifacts tab: shown as text, never run.
                page.goto(f"{runs.server.url}/studio/jobs/{runs.job}#outputs")
                page.click("li[data-path='x.html'] button")
                page.wait_for_selector("#preview pre")
                assert "<script>" in page.inner_text("#preview pre")
                page.click("li[data-path='x.svg'] button")
                page.wait_for_selector("#preview img")
                assert page.evaluate("window.ran === undefined")
                assert page.title() != "ran"
            finally:
                context.close()

    # The sync API in a thread of its own: another module's browser may hold this thread's loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(check).result()
