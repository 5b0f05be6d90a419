"""The job page's log viewer and failure triage in Chromium, against jobs that print what real
jobs print: colours, progress bars, warnings, markup, a traceback; a shell failure; a kill."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.factories import final_job, make_project
from tests.servers import Server
from tests.studio.conftest import submit

LINES = 12_000  # about 1.2 MB: more than the viewer's first page (the last MiB)
# Reading and laying out that many lines takes seconds on a loaded CI machine.
SLOW = 30_000

NOISY = f"""\
print("\\x1b[32mstarting\\x1b[0m <script>document.title='pwned'</script> & friends")
print("ERROR: the cache is unreachable; going on without it")
for i in range({LINES}):
    print(f"\\x1b[36mepoch {{i:05d}}\\x1b[0m loss={{1 / (i + 1):.6f}} " + "." * 60)
for p in range(0, 101, 10):
    print(f"\\rprogress {{p}}%", end="")
print()
print("WARNING: the learning rate is high")
print("a < b && c > d")


def fit():
    raise RuntimeError("diverged")


fit()
"""

KILLED = """\
import os, signal
print("allocating", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


STREAMS = """\
import sys

print("stdout line one")
print("stderr line one", file=sys.stderr)
print("ERROR: an error said on stdout")
print("stderr line two", file=sys.stderr)
print("stdout line two")
"""


# A progress bar on stderr, redrawn in place and never ended while the test looks (bounded: a
# minute, should the test stop before canceling it).
DOWNLOADING = """\
import sys, time

print("starting", flush=True)
for p in range(120):
    sys.stderr.write(f"\\rdownloading {p}%")
    sys.stderr.flush()
    time.sleep(0.5)
"""


@dataclass
class Failed:
    noisy: str
    shell: str
    killed: str


@pytest.fixture(scope="module")
def failed(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Failed:
    root = tmp_path_factory.mktemp("failing-jobs")
    ids = Failed(
        noisy=submit(make_project(root / "noisy", NOISY)),
        shell=submit(
            make_project(
                root / "shell",
                "",
                command="bash fail.sh",
                files={
                    "fail.sh": "echo 'reading data.csv'\necho 'fatal: cannot open data.csv' >&2\n"
                    "exit 3\n"
                },
            )
        ),
        killed=submit(make_project(root / "killed", KILLED)),
    )
    for run_id in (ids.noisy, ids.shell, ids.killed):
        assert final_job(client, run_id).status == JobStatus.FAILED
    return ids


def test_a_finished_log_opens_at_its_end_with_colours_marks_and_line_links(
    page: Page, workspace: Server, failed: Failed, screenshots: Path
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{failed.noisy}")
    log = page.locator("#log")
    error = log.locator(".ll.e", has_text="RuntimeError: diverged")
    expect(error).to_be_attached(timeout=SLOW)
    page.click("a[role=tab][href='#logs']")
    # A finished job: nothing to follow, and its end (the traceback) in view.
    expect(error).to_be_in_viewport(ratio=1, timeout=SLOW)
    expect(page.locator("#log-follow")).not_to_be_checked()
    expect(log.locator(".ll", has_text="epoch 11999").locator("span.f6")).to_have_text(
        "epoch 11999"
    )
    expect(log.locator(".ll.w")).to_contain_text("WARNING: the learning rate is high")
    expect(log.locator(".ll", has_text="progress")).to_have_text(re.compile(r"\d+progress 100%$"))
    # The first lines are past the first page: numbered from where it starts.
    assert int(log.locator(".ll").first.get_attribute("id")[1:]) > 1  # type: ignore[index]
    shot = screenshots / "job-log-finished.png"
    page.screenshot(path=str(shot))

    # A frame of the job's own code opens the snapshot's file at its line.
    frame = log.locator("a.frame").last
    expect(frame).to_have_text(re.compile(r"^main\.py:\d+$"))
    frame.click()
    expect(page).to_have_url(re.compile(r"/snapshot/main\.py#L-\d+$"))
    expect(page.locator("#file-view")).to_contain_text("diverged")
    page.go_back()

    # Line links: #L<n> opens the Logs tab at that line, marked.
    target = log.locator(".ll").nth(5)
    number = target.get_attribute("id")
    target.locator("a.ln").click()
    expect(page).to_have_url(re.compile(rf"#{number}$"))
    expect(target).to_have_class(re.compile(r"\btarget\b"))
    page.reload()
    expect(page.locator("a[role=tab][href='#logs']")).to_have_attribute("aria-selected", "true")
    expect(page.locator(f"#{number}")).to_have_class(re.compile(r"\btarget\b"), timeout=SLOW)
    expect(page.locator(f"#{number}")).to_be_in_viewport()
    page.click("#log-end")
    expect(error).to_be_in_viewport(timeout=SLOW)


def test_search_reads_the_whole_log_and_keeps_its_markup(
    page: Page, workspace: Server, failed: Failed
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{failed.noisy}#logs")
    log = page.locator("#log")
    expect(log.locator(".ll.e").last).to_contain_text("RuntimeError", timeout=SLOW)
    results = page.locator("#log-results")
    # "&" and "<" are found as text: the highlight never lands inside an entity.
    page.fill("#log-search", "&")
    expect(results.locator("li", has_text="a < b")).to_have_text(
        re.compile(r"a < b && c > d$"), timeout=SLOW
    )
    expect(results.locator("li", has_text="a < b").locator("mark")).to_have_count(2)
    expect(results.locator("li", has_text="friends")).to_contain_text(
        "<script>document.title='pwned'</script> & friends"
    )
    assert page.title() != "pwned" and log.locator("script").count() == 0
    # A line far before the loaded tail is found on the server, and opens where it is.
    page.fill("#log-search", "epoch 00007 ")
    expect(page.locator("#log-matches")).to_have_text(
        "1 matching line in the whole log", timeout=SLOW
    )
    results.locator("a.ln").click()
    line = log.locator(".ll.target")
    expect(line).to_contain_text("epoch 00007", timeout=SLOW)
    expect(line).to_be_in_viewport()

    page.fill("#log-search", "")
    page.click("#log-first-error")
    expect(log.locator(".ll.target")).to_contain_text(
        "ERROR: the cache is unreachable", timeout=SLOW
    )
    expect(log.locator(".ll.target")).to_have_class(re.compile(r"\be\b"))


def test_the_error_box_says_why_a_job_ended(page: Page, workspace: Server, failed: Failed) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{failed.noisy}")
    frames = page.locator("#error-box pre.traceback a.frame")
    expect(frames).to_have_count(2)  # the module's line and fit()'s, both in main.py
    expect(frames.last).to_have_text(re.compile(r'main\.py", line 1[0-9], in fit$'))
    expect(frames.last).to_have_attribute("href", re.compile(r"/snapshot/main\.py#L-1[0-9]$"))

    page.goto(f"{workspace.url}/studio/jobs/{failed.shell}")
    box = page.locator("#error-box")
    expect(box).to_contain_text("exit code 3")
    expect(box.locator("#last-lines")).to_contain_text("fatal: cannot open data.csv")
    # A job that wrote to stderr: its last stderr lines, not what it said on stdout.
    expect(box.locator("#last-lines")).not_to_contain_text("reading data.csv")
    expect(box.locator("#last-lines")).not_to_contain_text("[flowyard]")

    page.goto(f"{workspace.url}/studio/jobs/{failed.killed}")
    expect(page.locator("#error-headline")).to_contain_text("Killed (out of memory?)")


def test_the_tabs_follow_the_aria_tabs_pattern(
    page: Page, workspace: Server, failed: Failed
) -> None:
    page.goto(f"{workspace.url}/studio/jobs/{failed.shell}")
    tabs = page.locator("[role=tablist] [role=tab]")
    overview = tabs.nth(0)
    expect(overview).to_have_attribute("aria-selected", "true")
    expect(overview).to_have_attribute("tabindex", "0")
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "false")
    expect(tabs.nth(1)).to_have_attribute("tabindex", "-1")
    expect(page.locator("#overview")).to_have_attribute("role", "tabpanel")
    overview.focus()
    page.keyboard.press("ArrowRight")
    expect(tabs.nth(1)).to_be_focused()
    expect(tabs.nth(1)).to_have_attribute("aria-selected", "true")
    expect(page.locator("#metrics")).to_be_visible()
    expect(page.locator("#overview")).to_be_hidden()
    page.keyboard.press("End")
    expect(page.locator("a[role=tab][href='#snapshot']")).to_be_focused()
    expect(page.locator("#snapshot")).to_be_visible()
    page.keyboard.press("ArrowRight")  # wraps around
    expect(overview).to_be_focused()
    expect(overview).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("a[role=tab][href='#snapshot']")).to_have_attribute("aria-selected", "true")


def test_the_lines_a_job_wrote_to_stderr_are_marked_apart_from_errors(
    page: Page, workspace: Server, client: Client, tmp_path: Path, screenshots: Path
) -> None:
    run_id = submit(make_project(tmp_path / "streams", STREAMS))
    assert final_job(client, run_id).status == JobStatus.COMPLETED
    page.goto(f"{workspace.url}/studio/jobs/{run_id}#logs")
    log = page.locator("#log")
    expect(log.locator(".ll", has_text="stdout line two")).to_be_visible(timeout=SLOW)
    for text in ("stderr line one", "stderr line two"):
        line = log.locator(".ll", has_text=text)
        expect(line).to_have_class(re.compile(r"\bse\b"))
        expect(line).to_have_attribute("title", "Written to stderr")
        # Told to a screen reader with the line's number, and not copied with the text.
        expect(line.locator("a.ln .sr")).to_have_text(", stderr")
        expect(line.locator(".lt")).to_have_text(text)
    expect(log.locator(".ll.se")).to_have_count(2)
    # What a line says and which stream wrote it are apart: an error on stdout is no stderr.
    said = log.locator(".ll", has_text="ERROR: an error said on stdout")
    expect(said).to_have_class(re.compile(r"\be\b"))
    expect(said).not_to_have_class(re.compile(r"\bse\b"))
    for text in ("stdout line one", "stdout line two", "[flowyard] running:"):
        expect(log.locator(".ll", has_text=text)).not_to_have_class(re.compile(r"\bse\b"))
    expect(page.locator("#log-key")).to_contain_text("stderr")
    page.screenshot(path=str(screenshots / "job-log-stderr.png"))

    # "stderr only" lists the whole log's stderr lines (those holding the search term, if any).
    page.check("#log-stderr")
    expect(page.locator("#log-matches")).to_have_text("2 stderr lines in the whole log")
    expect(page.locator("#log-results li.se")).to_have_count(2)
    page.fill("#log-search", "line two")
    expect(page.locator("#log-results li")).to_have_count(1)
    expect(page.locator("#log-results li.se")).to_contain_text("stderr line two")
    page.uncheck("#log-stderr")
    expect(page.locator("#log-results li")).to_have_count(2)

    # The log's bytes are as printed: the marks live beside them, never in them.
    download = client.http.get(f"{workspace.url}/studio/jobs/{run_id}/log.txt")
    assert download.status_code == 200
    assert download.content == client.http.get(f"/jobs/{run_id}/logs").content
    for text in ("stdout line one", "stderr line one", "stderr line two"):
        assert f"\n{text}\n".encode() in download.content


def test_a_live_progress_bar_on_stderr_shows_before_its_line_ends(
    page: Page, workspace: Server, client: Client, tmp_path: Path
) -> None:
    run_id = submit(make_project(tmp_path / "downloading", DOWNLOADING))
    try:
        page.goto(f"{workspace.url}/studio/jobs/{run_id}#logs")
        bar = page.locator("#log .ll.se.partial", has_text=re.compile(r"downloading \d+%$"))
        expect(bar).to_be_visible(timeout=SLOW)
        expect(page.locator("#log .ll", has_text="starting")).not_to_have_class(
            re.compile(r"\bse\b")
        )
    finally:
        client.cancel_job(run_id)
