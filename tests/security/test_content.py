"""Untrusted content is inert at the workspace's origin, and every page says how it may be framed
and scripted: a project's or a run's ``x.html`` never runs as a page of the workspace."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow as mlflow_module
import playwright.sync_api as playwright
import pytest
from mlflow import MlflowClient

from flowyard import defaults
from flowyard.client import Client
from flowyard.server.middleware.headers import inert_type
from flowyard.snapshot import upload
from tests.servers import Server, auth_headers
from tests.studio.conftest import CHROMIUM, CHROMIUM_ARGS, sign_in

SCRIPT = "<script>document.title = 'ran'; window.ran = true;</script>"
# Each file a project or a run may hold that a browser would run as a page, and a PNG.
FILES = {
    "x.html": f"<html><body>{SCRIPT}hello</body></html>",
    "x.svg": f'<svg xmlns="http://www.w3.org/2000/svg">{SCRIPT}</svg>',
    "x.js": "document.title = 'ran';",
    "x.xml": '<?xml version="1.0"?><x xmlns:h="http://www.w3.org/1999/xhtml"><h:script>1</h:script></x>',
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


@dataclass
class Content:
    server: Server
    snapshot_id: str
    experiment_id: str
    run_id: str
    model: str


@pytest.fixture(scope="module")
def content(sqlite_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Content]:
    folder = tmp_path_factory.mktemp("hostile-content")
    for name, text in FILES.items():
        (folder / name).write_text(text)
    (folder / "x.png").write_bytes(PNG)
    with Client(sqlite_server.url) as client:
        snapshot = upload(client, folder)
    # The token plugin finds the saved token for the tracking URI MLflow is set to.
    mlflow_module.set_tracking_uri(sqlite_server.url)
    mlflow = MlflowClient(sqlite_server.url)
    experiment_id = mlflow.create_experiment(f"content-{uuid.uuid4().hex[:8]}")
    run = mlflow.create_run(experiment_id)
    mlflow.log_artifacts(run.info.run_id, str(folder))
    model = f"content-{uuid.uuid4().hex[:8]}"
    mlflow.create_registered_model(model)
    mlflow.create_model_version(model, run.info.artifact_uri, run_id=run.info.run_id)
    yield Content(sqlite_server, snapshot.id, experiment_id, run.info.run_id, model)
    mlflow_module.set_tracking_uri(None)


def raw_urls(c: Content, name: str) -> dict[str, str]:
    """Every route that serves ``name`` as stored, by what it is."""
    artifact = f"{c.experiment_id}/{c.run_id}/artifacts/{name}"
    return {
        "snapshot file": f"{defaults.API_PREFIX}/snapshots/{c.snapshot_id}/files/{name}",
        "get-artifact": f"/get-artifact?run_id={c.run_id}&path={name}",
        "model-version artifact": (
            f"/model-versions/get-artifact?name={c.model}&version=1&path={name}"
        ),
        "artifact proxy": f"/api/2.0/mlflow-artifacts/artifacts/{artifact}",
        "artifact proxy (UI)": f"/ajax-api/2.0/mlflow-artifacts/artifacts/{artifact}",
    }


def get(server: Server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, headers=auth_headers(server), timeout=30)


@pytest.mark.parametrize("name", sorted(FILES))
def test_script_capable_files_are_served_inert(content: Content, name: str) -> None:
    for route, path in raw_urls(content, name).items():
        response = get(content.server, path)
        assert response.status_code == 200, (route, response.text)
        assert response.content == FILES[name].encode(), route
        assert response.headers["content-security-policy"] == "sandbox", route
        assert response.headers["x-content-type-options"] == "nosniff", route
        served = response.headers["content-type"]
        if name == "x.svg":  # MLflow's UI shows an SVG as an image; opened, it is a download
            assert response.headers["content-disposition"].startswith("attachment"), route
        else:
            assert served.split(";")[0] == "text/plain", (route, served)


def test_images_stay_inline_but_sandboxed(content: Content) -> None:
    for route, path in raw_urls(content, "x.png").items():
        response = get(content.server, path)
        assert response.status_code == 200, (route, response.text)
        assert response.headers["content-type"] == "image/png", route
        assert response.headers["content-security-policy"] == "sandbox", route
        assert response.headers["x-content-type-options"] == "nosniff", route


def test_studio_pages_allow_only_their_own_scripts_and_no_framing(content: Content) -> None:
    for path in ("/studio/jobs", "/studio/computes", "/studio/login", "/studio/nowhere"):
        response = get(content.server, path)
        assert response.headers["content-type"].startswith("text/html"), path
        policy = {
            directive.split(" ", 1)[0]: directive.split(" ", 1)[1]
            for directive in response.headers["content-security-policy"].split("; ")
        }
        assert policy["frame-ancestors"] == "'none'", path
        assert policy["object-src"] == "'none'", path
        assert policy["base-uri"] == "'self'", path
        assert policy["script-src"] == "'self'", path
        assert response.headers["x-frame-options"] == "DENY", path


def test_mlflow_ui_may_not_be_framed_but_keeps_its_scripts(content: Content) -> None:
    page = get(content.server, "/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["x-frame-options"] == "DENY"
    script = next(part.split('"')[1] for part in page.text.split("src=")[1:])
    asset = get(content.server, script if script.startswith("/") else "/" + script)
    assert asset.status_code == 200
    assert "sandbox" not in asset.headers.get("content-security-policy", "")


def test_assets_at_the_pages_version_are_kept_and_any_other_asked_again(content: Content) -> None:
    """Pages link their scripts at a digest of the assets: a browser keeps those for good, and
    a changed asset has a new link. Any other link (an old page's, none) is checked each time."""
    page = get(content.server, "/studio/computes")
    links = re.findall(r'(?:src|href)="(/studio/static/[^"]+)"', page.text)
    assert links and all(re.search(r"\?v=[0-9a-f]{16}$", link) for link in links), links
    for link in links:
        kept = httpx.get(f"{content.server.url}{link}", timeout=30)
        assert kept.status_code == 200, link
        assert kept.headers["cache-control"] == "public, max-age=31536000, immutable", link
    bare = links[0].split("?")[0]
    for other in (bare, f"{bare}?v=0000000000000000", f"{bare}?v=x&v=y"):
        asked = httpx.get(f"{content.server.url}{other}", timeout=30)
        assert asked.status_code == 200 and asked.headers["cache-control"] == "no-cache", other


def test_every_response_says_nosniff_and_same_origin_referrer(content: Content) -> None:
    server = content.server
    responses = [
        get(content.server, f"{defaults.API_PREFIX}/info"),
        httpx.get(f"{server.url}{defaults.API_PREFIX}/info", timeout=30),  # a 401
        httpx.get(f"{server.url}/studio/static/studio.css", timeout=30),
        get(content.server, "/api/2.0/mlflow/experiments/search?max_results=1"),
        get(content.server, "/studio/jobs/nope/log.txt"),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.url
        assert response.headers["referrer-policy"] == "same-origin", response.url


def in_browser(content: Content, check: Callable[[playwright.Page], None], profile: Path) -> None:
    """Run ``check`` in a signed-in tab of a Chromium of its own, in a thread of its own: the
    studio tests' browser (Playwright's sync API) may already hold this thread's event loop."""

    def run() -> None:
        with playwright.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
                accept_downloads=True,
            )
            try:
                page = context.new_page()
                page.set_default_timeout(30_000)
                sign_in(page, content.server)
                check(page)
            finally:
                context.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(run).result()


def test_a_snapshot_html_file_does_not_run_in_a_signed_in_browser(
    content: Content, tmp_path: Path
) -> None:
    path = content.server.url + raw_urls(content, "x.html")["snapshot file"]

    def check(page: playwright.Page) -> None:
        # MLflow's routes answer it as a download; Flowyard's snapshot route shows it, as text.
        page.goto(path, wait_until="load")
        assert page.title() != "ran"
        assert page.evaluate("window.ran === undefined")
        assert "<script>" in page.inner_text("body")
        # The snapshot page's Download link still downloads the file as it is.
        page.goto(content.server.url + "/studio/jobs", wait_until="load")
        with page.expect_download() as download:
            page.evaluate(
                "url => { const a = document.createElement('a'); a.href = url; "
                "a.download = 'x.html'; document.body.append(a); a.click(); }",
                path,
            )
        assert Path(download.value.path()).read_text() == FILES["x.html"]

    in_browser(content, check, tmp_path / "profile")


def test_mlflow_ui_still_reads_artifacts_with_its_scripts(content: Content, tmp_path: Path) -> None:
    def check(page: playwright.Page) -> None:
        page.goto(content.server.url + "/", wait_until="load")
        page.wait_for_selector("text=Experiments")
        path = raw_urls(content, "x.html")["get-artifact"]
        text = page.evaluate("async url => (await fetch(url)).text()", path)
        assert text == FILES["x.html"]

    in_browser(content, check, tmp_path / "profile")


@pytest.mark.parametrize(
    ("served", "disposition", "expected"),
    [
        ("text/html; charset=utf-8", "", ("text/plain; charset=utf-8", "")),
        ("application/xhtml+xml", "inline", ("text/plain; charset=utf-8", "inline")),
        ("text/javascript", "", ("text/plain; charset=utf-8", "")),
        ("application/xml", "", ("text/plain; charset=utf-8", "")),
        ("image/svg+xml", "", ("image/svg+xml", "attachment")),
        ("image/svg+xml", "attachment; filename=a", ("image/svg+xml", "attachment; filename=a")),
        ("image/png", "", ("image/png", "")),
        ("application/octet-stream", "", ("application/octet-stream", "")),
        ("application/json", "", ("application/json", "")),
    ],
)
def test_inert_types(served: str, disposition: str, expected: tuple[str, str]) -> None:
    assert inert_type(served, disposition) == expected
