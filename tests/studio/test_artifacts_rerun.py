"""The job page's Artifacts tab and its "Run again…" dialog, in Chromium against a real workspace
with real jobs: issue 14's items 6 and 7, and the bugs "oversized images uncapped", "a big text
output downloaded whole then cut" and "the rerun form pushes the tabs down"."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from playwright.sync_api import Page, expect

from flowyard.client import Client
from flowyard.schemas import JobOut, JobStatus
from tests.factories import final_job, make_project, unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers
from tests.studio.conftest import sign_in

# A job that writes ./outputs (a CSV, nested JSON, a tall image, a 3 MB text, an HTML page) and
# logs with MLflow beside it (a file under notes/ and a model).
ARTIFACTS = r"""
import json, struct, zlib
from pathlib import Path

import mlflow
import mlflow.pyfunc


def png(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF
        )
    rows = b"".join(b"\0" + b"\x20\x60\xc0" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


out = Path("outputs")
(out / "nested" / "deep").mkdir(parents=True)
(out / "table.csv").write_text('name,score\n"Smith, Ann",0.91\nBob,0.5\n')
(out / "nested" / "deep" / "result.json").write_text(
    json.dumps({"rmse": 0.61, "config": {"layers": [64, 32], "inner": {"depth": 3}}})
)
(out / "tall.png").write_bytes(png(40, 3000))
(out / "big.txt").write_text("".join(f"line {i:07d} of a long output\n" for i in range(100_000)))
(out / "page.html").write_text("<script>document.title = 'ran'; window.ran = true;</script>hi")
with mlflow.start_run():
    mlflow.log_text("# Notes\nwritten by the job", "notes/readme.md")
    mlflow.pyfunc.log_model(name="echo", python_model=Echo(), pip_requirements=["mlflow"])
"""

SECRET = "s3cr3t-value-of-the-submitter"


@pytest.fixture(scope="module")
def artifact_job(client: Client, tmp_path_factory: pytest.TempPathFactory) -> JobOut:
    project = make_project(
        tmp_path_factory.mktemp("artifacts"), ARTIFACTS, parameters="{}", command="python main.py"
    )
    run = mlflow.projects.run(
        str(project),
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "cpu", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    job = final_job(client, run.run_id)
    assert job.status == JobStatus.COMPLETED, client.read_log(job.id)[0].decode()[-3000:]
    return job


def test_the_artifacts_tab_shows_every_artifact_and_previews_them(
    page: Page, workspace: Server, artifact_job: JobOut, screenshots: Path
) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{workspace.url}/studio/jobs/{artifact_job.id}#outputs")
    files = page.locator("#artifact-list li[data-path]")
    # ./outputs, what the job logged with MLflow, and the model it logged (a root of its own).
    expect(page.locator("#artifact-list li[data-path='outputs/table.csv']")).to_have_count(1)
    expect(page.locator("li[data-path='notes/readme.md']")).to_have_count(1)
    model = page.locator(".artifact-root[data-model]")
    expect(model).to_contain_text("Model echo")
    expect(model.locator("li[data-path='MLmodel']")).to_have_count(1)
    assert files.count() >= 8
    # Human sizes.
    expect(page.locator("li[data-path='outputs/big.txt'] .size")).to_have_text("2.9 MB")
    expect(page.locator("li[data-path='outputs/table.csv'] .size")).to_have_text("37 B")

    # CSV as a table: a quoted comma stays in its cell.
    page.click("li[data-path='outputs/table.csv'] button")
    table = page.locator("#preview table.csv")
    expect(table.locator("th")).to_have_text(["name", "score"])
    expect(table.locator("tbody tr").first.locator("td").first).to_have_text("Smith, Ann")
    expect(page.locator("#preview .cut-note")).to_have_text(re.compile(r"^2 rows\."))

    # JSON folded: the top levels open, deeper ones closed until asked.
    page.click("li[data-path='outputs/nested/deep/result.json'] button")
    preview = page.locator("#preview")
    expect(preview.locator("> ul.json")).to_contain_text("rmse")
    inner = preview.locator("details", has_text="depth").last
    expect(inner.locator(".v-number", has_text="3")).to_be_hidden()
    inner.locator("summary").click()
    expect(inner.locator(".v-number", has_text="3")).to_be_visible()
    shot = f"{screenshots}/artifacts-json.png"
    page.screenshot(path=shot, full_page=True)

    # A tall image is capped to the box (it was drawn 3,000 px high).
    page.click("li[data-path='outputs/tall.png'] button")
    image = preview.locator("img")
    expect(image).to_be_visible()
    page.wait_for_function("document.querySelector('#preview img').complete")
    box = image.bounding_box()
    assert box is not None and 0 < box["height"] <= 480, box

    # A big text: only its head is read, and the page says so and links the whole file.
    page.click("li[data-path='outputs/big.txt'] button")
    expect(preview.locator("pre")).to_contain_text("line 0000000 of a long output")
    expect(preview.locator(".cut-note")).to_contain_text("Showing the first 64.0 KB of 2.9 MB")
    full = preview.locator(".cut-note a")
    expect(full).to_have_attribute("href", re.compile(r"get-artifact\?path=outputs%2Fbig\.txt"))
    assert "line 0099999" not in preview.locator("pre").inner_text()
    assert not [u for u in requests if "get-artifact" in u and "big.txt" in u], requests

    # An HTML artifact is shown as its text; its script never runs in the studio.
    page.click("li[data-path='outputs/page.html'] button")
    expect(preview.locator("pre")).to_contain_text("<script>document.title")
    assert page.evaluate("window.ran === undefined")
    assert page.title() != "ran"
    page.set_viewport_size({"width": 1440, "height": 900})
    page.screenshot(path=f"{screenshots}/artifacts.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_the_artifacts_tab_downloads_a_model_file(
    page: Page, workspace: Server, artifact_job: JobOut, tmp_path: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{artifact_job.id}#outputs")
    with page.expect_download() as info:
        page.locator(".artifact-root[data-model] li[data-path='MLmodel'] a").click()
    saved = tmp_path / "MLmodel"
    info.value.save_as(saved)
    model = MlflowClient().search_logged_models(
        [artifact_job.experiment_id], filter_string=f"source_run_id = '{artifact_job.id}'"
    )[0]
    expected = Path(mlflow.artifacts.download_artifacts(f"{model.artifact_location}/MLmodel"))
    assert saved.read_bytes() == expected.read_bytes()


@pytest.fixture(scope="module")
def secret_job(client: Client, tmp_path_factory: pytest.TempPathFactory) -> JobOut:
    """A job whose submitter (the owner) gave it a secret ENV_VAR; it need not finish."""
    project = make_project(tmp_path_factory.mktemp("secret"), "print('hi')\n")
    run = mlflow.projects.run(
        str(project),
        parameters={"alpha": 0.3},
        backend="flowyard",
        synchronous=False,
        backend_config={
            "COMPUTE": "cpu",
            "USE_CONDA": False,
            "STREAM_OUTPUT": False,
            "ENV_VARS": {"API_KEY": {"value": SECRET, "secret": True}},
        },
    )
    job = client.get_job(run.run_id)
    assert job.secret_env_names == ["API_KEY"]
    return job


@pytest.fixture(scope="module")
def target_experiment(client: Client) -> str:
    return MlflowClient().create_experiment("studio-rerun-target")


def _open_rerun(page: Page) -> None:
    tabs = page.locator("nav.tabs")
    before = tabs.bounding_box()
    page.click("#rerun-open")
    expect(page.locator("#rerun-dialog")).to_be_visible()
    # A modal dialog: the tabs stay where they were.
    assert tabs.bounding_box() == before


def test_run_again_edits_shows_the_differences_and_submits(
    page: Page,
    workspace: Server,
    secret_job: JobOut,
    client: Client,
    target_experiment: str,
    screenshots: Path,
) -> None:
    original = secret_job
    name = MlflowClient().get_run(original.id).info.run_name
    page.goto(f"{workspace.url}/studio/jobs/{original.id}")
    _open_rerun(page)
    form = page.locator("#rerun-form")
    expect(form.locator("input[name=run_name]")).to_have_value(f"{name} (rerun 1)")
    form.locator("input[data-param=alpha]").fill("not-a-number")
    page.click("#rerun-review")
    page.click("#rerun-submit")
    expect(page.locator("#rerun-error")).to_contain_text("must be a number")
    page.click("#rerun-back")

    form.locator("input[data-param=alpha]").fill("0.9")
    form.locator("select[name=experiment_id]").select_option(target_experiment)
    form.locator("input[name=priority]").fill("7")
    form.locator("textarea[name=env_vars]").fill("GREETING=hello world\n")
    page.click("#rerun-review")
    diff = page.locator("#rerun-diff tbody tr")
    expect(diff.filter(has_text="parameter alpha")).to_contain_text("0.3")
    expect(diff.filter(has_text="parameter alpha")).to_contain_text("0.9")
    expect(diff.filter(has_text="experiment")).to_contain_text("studio-rerun-target")
    expect(diff.filter(has_text="priority")).to_contain_text("7")
    expect(diff.filter(has_text="env GREETING")).to_contain_text("hello world")
    expect(diff.filter(has_text="compute")).to_have_count(0)  # unchanged: not listed
    page.screenshot(path=f"{screenshots}/rerun-diff.png")
    page.click("#rerun-submit")
    expect(page).not_to_have_url(re.compile(original.id))
    first = client.get_job(page.url.rsplit("/", 1)[-1])
    assert first.parameters["alpha"] == "0.9" and "--alpha 0.9" in (first.options.command or "")
    assert first.experiment_id == target_experiment
    assert first.priority == 7
    assert first.options.env_vars == {"GREETING": "hello world"}
    assert first.snapshot_id == original.snapshot_id and first.compute == "cpu"
    assert first.secret_env_names == ["API_KEY"]  # the submitter's own re-run keeps them
    assert MlflowClient().get_run(first.id).info.run_name == f"{name} (rerun 1)"

    # A re-run of the re-run: numbered on, and the page shows the chain from the original.
    _open_rerun(page)
    expect(form.locator("input[name=run_name]")).to_have_value(f"{name} (rerun 2)")
    page.click("#rerun-review")
    expect(page.locator("#rerun-same")).to_be_visible()
    page.click("#rerun-submit")
    expect(page).not_to_have_url(re.compile(first.id))
    chain = page.locator("#rerun-chain li")
    expect(chain).to_have_count(3)
    expect(chain.nth(0)).to_contain_text(name or "")
    expect(chain.nth(0)).to_have_attribute("data-depth", "0")
    expect(chain.nth(1)).to_have_attribute("data-depth", "1")
    expect(chain.nth(2)).to_have_attribute("data-depth", "2")
    expect(chain.nth(2)).to_have_attribute("aria-current", "page")
    expect(chain.nth(2)).to_contain_text(f"{name} (rerun 2)")
    page.screenshot(path=f"{screenshots}/rerun-chain.png", full_page=True)


def test_cancel_asks_first(page: Page, workspace: Server, client: Client) -> None:
    run_id, _token = unstarted_job(workspace.url, auth_headers(workspace))
    page.goto(f"{workspace.url}/studio/jobs/{run_id}")
    asked: list[str] = []

    def answer(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.dismiss() if len(asked) == 1 else dialog.accept()

    page.on("dialog", answer)
    page.click("#cancel")
    assert asked and run_id in asked[0]
    assert not client.get_job(run_id).cancel_requested  # dismissed: nothing canceled
    expect(page.locator("#cancel")).to_be_enabled()
    page.click("#cancel")
    expect(page.locator("#status .badge")).to_have_text("canceled")
    assert client.get_job(run_id).status == JobStatus.CANCELED


@pytest.fixture
def as_another_user(page: Page, workspace: Server) -> Iterator[Page]:
    """The page signed in as a contributor who is not the workspace's owner."""
    page.context.clear_cookies()
    sign_in(page, workspace, new_token(workspace, "contributor"))
    yield page
    page.context.clear_cookies()


def test_run_again_keeps_secrets_with_their_submitter(
    page: Page, workspace: Server, secret_job: JobOut, screenshots: Path
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{workspace.url}/studio/jobs/{secret_job.id}")
    page.click("#rerun-open")
    expect(page.locator("#secrets-kept")).to_contain_text("API_KEY")
    expect(page.locator("#secrets-dropped")).to_have_count(0)
    # On a phone the dialog fits the screen's width.
    box = page.locator("#rerun-dialog").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.screenshot(path=f"{screenshots}/rerun-phone.png")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_another_users_run_again_drops_the_secrets_and_says_which(
    as_another_user: Page, workspace: Server, client: Client, secret_job: JobOut
) -> None:
    page = as_another_user
    page.goto(f"{workspace.url}/studio/jobs/{secret_job.id}")
    page.click("#rerun-open")
    expect(page.locator("#secrets-dropped")).to_contain_text("API_KEY")
    expect(page.locator("#secrets-dropped")).to_contain_text(secret_job.user)
    expect(page.locator("#secrets-kept")).to_have_count(0)
    page.click("#rerun-review")
    page.click("#rerun-submit")
    expect(page).not_to_have_url(re.compile(secret_job.id))
    rerun = client.get_job(page.url.rsplit("/", 1)[-1])
    assert rerun.secret_env_names == []
    assert rerun.user != secret_job.user
    expect(page.locator("#timeline")).to_contain_text("without the secret ENV_VARS API_KEY")

    # Their own value instead: the re-run runs with it.
    page.goto(f"{workspace.url}/studio/jobs/{secret_job.id}")
    page.click("#rerun-open")
    page.fill("input[data-secret=API_KEY]", "their-own-value")
    page.click("#rerun-review")
    expect(page.locator("#rerun-diff tbody tr", has_text="secret API_KEY")).to_be_visible()
    page.click("#rerun-submit")
    expect(page).not_to_have_url(re.compile(secret_job.id))
    assert client.get_job(page.url.rsplit("/", 1)[-1]).secret_env_names == ["API_KEY"]
