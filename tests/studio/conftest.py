"""Fixtures for the studio: a workspace with real jobs on a `process` compute, and a headless
Chromium (Debian's, never Playwright's download) that reaches nothing beyond loopback."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import playwright.sync_api as playwright
import pytest

from flowyard.client import Client
from flowyard.schemas import JobOut, JobStatus
from tests.factories import EXAMPLE, end_jobs, final_job, make_project, process_workspace
from tests.servers import Server

CHROMIUM = "/usr/bin/chromium"
# No sandbox (containers), no GPU, and none of Chromium's own calls home: the tests' only
# connections are to the workspace on 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

SLOW = """\
import time
import mlflow
import playwright.sync_api as playwright

with mlflow.start_run():
    for i in range(240):  # a minute: bounded even if a test stops before canceling it
        print(f"line {i}", flush=True)
        mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        time.sleep(0.25)
"""

FAILING = """\
def check(alpha):
    raise ValueError(f"alpha must be below 1, got {alpha}")


check(5)
"""


@dataclass
class Jobs:
    """The jobs every studio test looks at, submitted once."""

    finished: JobOut
    other: JobOut
    failed: JobOut


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = process_workspace(
        tmp_path_factory.mktemp("studio"), "cpu", "--max-concurrent-jobs", "4"
    )
    yield server
    end_jobs(server)
    server.stop()


@pytest.fixture(scope="module")
def client(workspace: Server) -> Iterator[Client]:
    mlflow.set_tracking_uri(workspace.url)
    mlflow.set_experiment("studio-tests")
    with Client(workspace.url) as c:
        yield c
    mlflow.set_tracking_uri(None)


def submit(project: Path, parameters: dict[str, object] | None = None) -> str:
    run = mlflow.projects.run(
        str(project),
        parameters=parameters or {},
        backend="flowyard",
        synchronous=False,
        backend_config={"COMPUTE": "cpu", "USE_CONDA": False, "STREAM_OUTPUT": False},
    )
    return str(run.run_id)


@pytest.fixture(scope="module")
def jobs(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    failing = make_project(tmp_path_factory.mktemp("failing"), FAILING)
    ids = [
        submit(EXAMPLE, {"alpha": 0.3, "steps": 5}),
        submit(EXAMPLE, {"alpha": 0.7, "steps": 8}),
        submit(failing),
    ]
    finished, other, failed = (final_job(client, i) for i in ids)
    assert finished.status == other.status == JobStatus.COMPLETED
    assert failed.status == JobStatus.FAILED
    return Jobs(finished=finished, other=other, failed=failed)


@pytest.fixture
def running_job(client: Client, tmp_path: Path) -> Iterator[str]:
    """A job that prints a line and logs a metric four times a second, once it runs; canceled
    at the end of the test if the test has not."""
    run_id = submit(make_project(tmp_path / "slow", SLOW))
    deadline = time.monotonic() + 120
    while True:
        job = client.get_job(run_id)
        if job.status == JobStatus.RUNNING and job.log_size > 0:
            break
        assert not job.status.is_final, job
        assert time.monotonic() < deadline, f"job {run_id} did not start running in 120 s"
        time.sleep(0.2)
    yield run_id
    client.cancel_job(run_id)


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    # A missing browser fails the tests rather than skipping them: `make test` installs it.
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing; `make studio-browser` installs it"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with playwright.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            accept_downloads=True,
            viewport={"width": 1280, "height": 900},
        )
        yield context
        context.close()


def sign_in(page: playwright.Page, server: Server, token: str | None = None) -> None:
    """Sign in to ``server``'s studio through its sign-in page, as a user does."""
    page.goto(f"{server.url}/studio/login")
    assert token or server.token
    page.fill("input[name=token]", token or server.token or "")
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/studio/jobs")


@pytest.fixture
def page(browser_context: object, workspace: Server) -> Iterator[playwright.Page]:
    """A tab signed in to the module's workspace (with its owner token)."""
    assert isinstance(browser_context, playwright.BrowserContext)
    page = browser_context.new_page()
    page.set_default_timeout(30_000)
    # The studio's pages run under a strict Content-Security-Policy: anything it blocks (an
    # inline script or style, a foreign source) is a studio bug, which Chromium reports here.
    blocked: list[str] = []
    page.on(
        "console",
        lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
    )
    cookie = f"flowyard_session_{workspace.port}"
    if not any(c["name"] == cookie for c in browser_context.cookies(workspace.url)):
        sign_in(page, workspace)
    yield page
    page.close()
    assert not blocked, blocked


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("studio-screenshots")
