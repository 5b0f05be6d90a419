"""The stderr ranges a runner sends with its log (flowyard/log_ranges.py) are hostile input like
the log itself: checked before anything is stored (out of the piece, negative, out of order,
overlapping, too many: a 4xx that says so), taken from the job's own runner only, kept right
through a retried append, and never in the log's bytes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from flowyard.log_ranges import MAX_RANGES
from tests.factories import unstarted_job
from tests.server.test_auth import new_token
from tests.servers import Server, auth_headers, new_workspace

API = "/api/flowyard/v1"


@dataclass
class Jobs:
    server: Server
    job_id: str
    runner: httpx.Client  # the job's own runner
    other_runner: str  # another job's runner token
    reader: dict[str, str]


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jobs]:
    server = new_workspace(tmp_path_factory.mktemp("log-streams"))
    job_id, token = unstarted_job(server.url, auth_headers(server))
    _other_id, other_token = unstarted_job(server.url, auth_headers(server))
    reader = {"Authorization": f"Bearer {new_token(server, 'reader')}"}
    with httpx.Client(
        base_url=server.url + API, headers={"Authorization": f"Bearer {token}"}
    ) as runner:
        yield Jobs(server, job_id, runner, other_token, reader)
    server.stop()


def _size(jobs: Jobs) -> int:
    answer = httpx.get(f"{jobs.server.url}{API}/jobs/{jobs.job_id}", headers=jobs.reader)
    return int(answer.json()["log_size"])


def _stderr_lines(jobs: Jobs) -> list[str]:
    page = httpx.get(
        f"{jobs.server.url}/studio/jobs/{jobs.job_id}/log/lines",
        params={"offset": 0},
        headers=jobs.reader,
    ).json()
    found = httpx.get(
        f"{jobs.server.url}/studio/jobs/{jobs.job_id}/log/search",
        params={"stderr": "true"},
        headers=jobs.reader,
    ).json()
    marked = [m["line"] for m in found["matches"]]
    assert marked == [int(n) for n in _marked_in(page["html"])]
    return [m["html"] for m in found["matches"]]


def _marked_in(html: str) -> list[str]:
    import re

    return re.findall(r'<div class="ll[^"]* se" id="L(\d+)" title="Written to stderr">', html)


def test_bad_ranges_are_refused_and_nothing_is_stored(jobs: Jobs) -> None:
    size = _size(jobs)
    piece = b"0123456789\n"
    bad = {
        "0-2201": "past the piece",
        "-1-4": "not START-END",
        "4-2": "empty",
        "0-5,3-8": "overlaps",
        "6-8,0-2": "overlaps or precedes",
        "0-4;5-6": "not START-END",
        ",".join(f"{i}-{i + 1}" for i in range(0, 2 * MAX_RANGES + 2, 2)): "more than",
    }
    for stderr, says in bad.items():
        answer = jobs.runner.post(
            f"/jobs/{jobs.job_id}/logs",
            params={"offset": size, "stderr": stderr},
            content=piece * 200,
        )
        assert answer.status_code == 400, (stderr[:40], answer.text)
        assert says in answer.json()["message"] and "stderr range" in answer.json()["message"]
    # Longer than any list of allowed ranges could be: refused before it is read.
    huge = jobs.runner.post(
        f"/jobs/{jobs.job_id}/logs",
        params={"offset": size, "stderr": "1-2," * 10_000},
        content=piece,
    )
    assert 400 <= huge.status_code < 500 and "stderr" in huge.text
    assert _size(jobs) == size


def test_only_the_jobs_own_runner_appends_with_ranges(jobs: Jobs) -> None:
    size = _size(jobs)
    params = {"offset": size, "stderr": "0-4"}
    url = f"{jobs.server.url}{API}/jobs/{jobs.job_id}/logs"
    other = {"Authorization": f"Bearer {jobs.other_runner}"}
    assert httpx.post(url, params=params, content=b"nope\n", headers=other).status_code == 403
    assert httpx.post(url, params=params, content=b"nope\n", headers=jobs.reader).status_code == 403
    assert httpx.post(url, params=params, content=b"nope\n").status_code == 401
    assert _size(jobs) == size


def test_ranges_survive_a_retry_and_stay_out_of_the_log(jobs: Jobs) -> None:
    start = _size(jobs)
    first = b"out 1\nerr 1\n"
    sent = jobs.runner.post(
        f"/jobs/{jobs.job_id}/logs", params={"offset": start, "stderr": "6-12"}, content=first
    )
    assert sent.status_code == 200, sent.text
    # The answer was lost: the runner sends again from the same offset, with more after it.
    again = first + b"out 2\nerr 2\n"
    retried = jobs.runner.post(
        f"/jobs/{jobs.job_id}/logs",
        params={"offset": start, "stderr": "6-12,18-24"},
        content=again,
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["size"] == start + len(again)
    assert _stderr_lines(jobs) == ["err 1", "err 2"]
    # The log itself is the bytes as printed, nothing added.
    raw = httpx.get(f"{jobs.server.url}/studio/jobs/{jobs.job_id}/log.txt", headers=jobs.reader)
    assert raw.content.endswith(again) and len(raw.content) == start + len(again)
    api = httpx.get(f"{jobs.server.url}{API}/jobs/{jobs.job_id}/logs", headers=jobs.reader)
    assert api.content == raw.content
