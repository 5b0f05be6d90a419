"""Reading a job's log costs the server a bounded amount of memory per request: a big log is
served in pages, and every reader (the client, `job logs`, `wait()`, the studio's download, the
workspace storing the log when the job ends) follows the pages to the end."""

from __future__ import annotations

import base64
import io
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.schemas import JobStatus
from flowyard.submitted_run import FlowyardSubmittedRun
from tests.factories import unstarted_job
from tests.servers import Server, auth_headers, new_workspace, run_cli

API = "/api/flowyard/v1"
MiB = 1024 * 1024
# The server's page when a reader asks for no limit, and the most it answers to any ask.
DEFAULT_PAGE = 1 * MiB
MAX_PAGE = 8 * MiB
LOG_MB = 50
READERS = 8
# Generous: before pages, eight readers of the whole 50 MB log grew the server by about 400 MB.
MAX_GROWTH = 100 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A workspace of its own, so that nothing but this module's requests moves its memory."""
    server = new_workspace(tmp_path_factory.mktemp("logs"))
    yield server
    server.stop()


@dataclass
class BigLog:
    job_id: str
    runner: httpx.Client
    log: bytes


@pytest.fixture(scope="module")
def big(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigLog]:
    """A job whose runner (its own token) has appended a 50 MB log; still running."""
    # Printable lines, different on every line, so any misplaced byte shows.
    log = base64.encodebytes(random.Random(7).randbytes(LOG_MB * MiB * 3 // 4))
    job_id, runner_token = unstarted_job(server.url, auth_headers(server))
    with httpx.Client(
        base_url=server.url + API,
        headers={"Authorization": f"Bearer {runner_token}"},
        timeout=120,
    ) as runner:
        for at in range(0, len(log), MiB):
            piece = log[at : at + MiB]
            answer = runner.post(f"/jobs/{job_id}/logs", params={"offset": at}, content=piece)
            assert answer.status_code == 200, answer.text
        yield BigLog(job_id, runner, log)


def _memory(server: Server, field: str) -> int:
    assert server.proc is not None
    status = Path(f"/proc/{server.proc.pid}/status").read_text()
    line = next(ln for ln in status.splitlines() if ln.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def _reset_peak(server: Server) -> int:
    """Reset the server's peak RSS (VmHWM) to its current RSS, which it returns."""
    assert server.proc is not None
    Path(f"/proc/{server.proc.pid}/clear_refs").write_text("5")
    return _memory(server, "VmRSS")


def test_parallel_readers_of_a_big_log_each_get_a_page(server: Server, big: BigLog) -> None:
    sizes: list[int] = []
    failures: list[BaseException] = []

    def read() -> None:
        try:
            answer = httpx.get(
                f"{server.url}{API}/jobs/{big.job_id}/logs",
                headers=auth_headers(server),
                timeout=300,
            )
            assert answer.status_code == 200, answer.text
            assert int(answer.headers["X-Flowyard-Log-Size"]) == len(big.log)
            sizes.append(len(answer.content))
        except BaseException as e:
            failures.append(e)

    before = _reset_peak(server)
    readers = [threading.Thread(target=read) for _ in range(READERS)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    peak = _memory(server, "VmHWM")
    assert not failures, failures
    assert len(sizes) == READERS and max(sizes) <= DEFAULT_PAGE, sizes
    assert peak - before < MAX_GROWTH, f"the server grew by {(peak - before) / MiB:.0f} MB"


def test_following_the_pages_gives_back_the_whole_log(server: Server, big: BigLog) -> None:
    with Client(server.url) as client:
        got = bytearray()
        while True:
            answer = client.http.get(f"/jobs/{big.job_id}/logs", params={"offset": len(got)})
            assert answer.headers["X-Flowyard-Next-Offset"] == str(len(got) + len(answer.content))
            got += answer.content
            if not answer.content:
                break
        assert got == big.log
        # A reader may ask for a bigger page, up to the server's most.
        answer = client.http.get(f"/jobs/{big.job_id}/logs", params={"limit": 64 * MiB})
        assert len(answer.content) == MAX_PAGE

    printed = run_cli("job", "logs", big.job_id, cwd=server.cwd, timeout=300)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.encode() == big.log

    download = httpx.get(
        f"{server.url}/studio/jobs/{big.job_id}/log.txt", headers=auth_headers(server), timeout=300
    )
    assert download.status_code == 200 and download.content == big.log


def test_an_ended_jobs_big_log_is_stored_and_streamed(
    server: Server, big: BigLog, tmp_path: Path
) -> None:
    # The job ends: the workspace stores its log as an artifact, without holding it whole.
    before = _reset_peak(server)
    ended = big.runner.post(
        f"/jobs/{big.job_id}/status", json={"status": "failed", "reason": "test over"}
    )
    assert ended.status_code == 200, ended.text
    peak = _memory(server, "VmHWM")
    assert peak - before < 40 * MiB, (
        f"storing the log grew the server by {(peak - before) / MiB:.0f} MB"
    )

    mlflow.set_tracking_uri(server.url)
    try:
        stored = MlflowClient().download_artifacts(big.job_id, "logs/std_log.txt", str(tmp_path))
    finally:
        mlflow.set_tracking_uri(None)
    assert Path(stored).read_bytes() == big.log

    # `wait()` streams every page.
    out = io.StringIO()
    with Client(server.url) as client:
        run = FlowyardSubmittedRun(client, client.get_job(big.job_id), out=out)
        assert run.wait() is False
    assert run.job.status == JobStatus.FAILED
    assert big.log.decode() in out.getvalue()
