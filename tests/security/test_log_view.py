"""The studio's log viewer routes: a reader may use them, nobody signed out may, and a job's
output, however hostile, comes back inert (text, and the viewer's own tags and links only)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import httpx
import pytest

from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers, new_workspace

API = "/api/flowyard/v1"
HOSTILE = (
    b"<script>document.title='pwned'</script><img src=x onerror=alert(1)>\n"
    b"\x1b]8;;javascript:alert(1)\x1b\\click me\x1b]8;;\x1b\\\n"  # an OSC 8 hyperlink
    b'\x1b[31m"><svg onload=alert(1)>\x1b[0m\x1b]0;<b>title</b>\x07\n'
    b'\x1b[38;5;300;"><x\x1b[0m \x1b[2J\x1b[1000D\x9b31m\x00\x07 bell\n'
    b'Traceback (most recent call last):\n  File "/x/project/<b>.py", line 1, in <m>\n'
    b"ValueError: </div><script>alert(2)</script>\n"
)
# What the viewer itself puts in a line: its own tags and attributes, nothing else.
TAGS = {"div", "a", "span", "mark"}
ATTRIBUTES = {"class", "id", "href", "title"}
# Its hostile lines written to stderr, the traceback among them: marked, and still inert.
FIRST_END = HOSTILE.index(b"\n") + 1
STDERR = f"0-{FIRST_END},{HOSTILE.index(b'Traceback')}-{len(HOSTILE)}"


@dataclass
class Logged:
    server: Server
    job_id: str
    reader: str


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    server = new_workspace(tmp_path_factory.mktemp("log-view"))
    job_id, runner_token = unstarted_job(server.url, auth_headers(server))
    appended = httpx.post(
        f"{server.url}{API}/jobs/{job_id}/logs",
        params={"offset": 0, "stderr": STDERR},
        content=HOSTILE,
        headers={"Authorization": f"Bearer {runner_token}"},
    )
    assert appended.status_code == 200, appended.text
    yield Logged(server, job_id, new_token(server, "reader"))
    server.stop()


class Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TAGS:
            self.bad.append(tag)
        for name, value in attrs:
            if name not in ATTRIBUTES:
                self.bad.append(f"{tag} {name}")
            if name == "href" and not (value or "").startswith(("#L", "/studio/jobs/")):
                self.bad.append(f"href {value}")
            if name == "title" and value != "Written to stderr":
                self.bad.append(f"title {value}")


def inert(html: str) -> None:
    checker = Checker()
    checker.feed(html)
    checker.close()
    assert checker.bad == [], checker.bad
    assert not any(c in html for c in "\x1b\x07\x00\x9b")


def test_a_reader_gets_the_log_rendered_inert(logged: Logged) -> None:
    url = f"{logged.server.url}/studio/jobs/{logged.job_id}/log"
    reader = {"Authorization": f"Bearer {logged.reader}"}
    page = httpx.get(f"{url}/lines", params={"offset": 0}, headers=reader).json()
    assert page["lines"] == 7
    inert(page["html"])
    assert page["html"].count('title="Written to stderr"') == 4
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in page["html"]
    assert "click me" in page["html"] and "javascript:" not in page["html"]
    assert "<b>title</b>" not in page["html"]

    searches = ({"q": "<script>"}, {"q": '"><'}, {"q": "alert"}, {"errors": "true"})
    for params in (*searches, {"stderr": "true"}, {"q": "alert", "stderr": "true"}):
        found = httpx.get(f"{url}/search", params=params, headers=reader).json()
        assert found["matches"], params
        for match in found["matches"]:
            inert(match["html"])
    # A colour state handed back is checked, not trusted.
    hostile_state = {"offset": 0, "state": '1;"><script>'}
    assert httpx.get(f"{url}/lines", params=hostile_state, headers=reader).status_code == 200


def test_signed_out_nobody_reads_the_log(logged: Logged) -> None:
    url = f"{logged.server.url}/studio/jobs/{logged.job_id}/log"
    for path in ("/lines", "/search?q=x"):
        answer = httpx.get(url + path, headers={"Accept": "application/json"})
        assert answer.status_code == 401, (path, answer.status_code)
    reader = {"Authorization": f"Bearer {logged.reader}"}
    empty = httpx.get(f"{url}/search", params={"q": " "}, headers=reader)
    assert empty.status_code == 400 and "needs a term" in empty.json()["message"]
