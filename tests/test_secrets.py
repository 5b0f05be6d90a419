"""Secret ENV_VARS: stored encrypted, handed to the job, never shown by the API, the studio or the
log (masked where the job prints them)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow import MlflowClient

from flowyard.client import Client
from flowyard.runner.masking import Masker
from tests.factories import make_project
from tests.servers import Server

SECRET = "hunter2-s3cr3t-VALUE"

PRINTS_ITS_SECRET = """\
import hashlib, os, sys, time
value = os.environ["API_KEY"]
print("the key is", value, flush=True)
# Split over two writes with a pause, so it reaches the runner in two pieces.
sys.stdout.write("again: " + value[:7]); sys.stdout.flush(); time.sleep(0.5)
sys.stdout.write(value[7:] + " done\\n"); sys.stdout.flush()
# On stderr too, split while a stdout line waits for its end: each stream masked on its own.
sys.stdout.write("out: " + value[:3]); sys.stdout.flush()
sys.stderr.write("err: " + value[:5]); sys.stderr.flush(); time.sleep(0.5)
sys.stderr.write(value[5:] + " end\\n"); sys.stderr.flush()
sys.stdout.write(value[3:] + " end\\n"); sys.stdout.flush()
print("plain is", os.environ["PLAIN"])
os.makedirs("outputs", exist_ok=True)
open("outputs/digest.txt", "w").write(hashlib.sha256(value.encode()).hexdigest())
"""


def test_a_secret_reaches_the_job_and_nowhere_else(
    sqlite_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    project = make_project(
        tmp_path / "project", PRINTS_ITS_SECRET, parameters="{}", command="python main.py"
    )
    mlflow.set_tracking_uri(sqlite_server.url)
    try:
        mlflow.set_experiment(f"secrets-{tmp_path.name}")
        env_vars = {"API_KEY": {"value": SECRET, "secret": True}, "PLAIN": "visible"}
        submitted = mlflow.projects.run(
            uri=str(project),
            backend="flowyard",
            backend_config={"USE_CONDA": False, "ENV_VARS": env_vars},
        )
        client = MlflowClient()
        digest = Path(
            client.download_artifacts(submitted.run_id, "outputs/digest.txt", str(tmp_path))
        )
        stored_log = Path(
            client.download_artifacts(submitted.run_id, "logs/std_log.txt", str(tmp_path))
        )
    finally:
        mlflow.set_tracking_uri(None)
    # The job got the value itself.
    assert digest.read_text() == hashlib.sha256(SECRET.encode()).hexdigest()

    with Client(sqlite_server.url) as api:
        log, _status, _size = api.read_log(submitted.run_id)
        job = api.get_job(submitted.run_id)
        raw_job = api.http.get(f"/jobs/{submitted.run_id}").text
    text = log.decode()
    assert "the key is ***" in text and "again: *** done" in text and "plain is visible" in text
    assert "out: *** end" in text and "err: *** end" in text
    assert SECRET not in text and SECRET not in stored_log.read_text()
    assert job.secret_env_names == ["API_KEY"] and job.secret_env is None
    assert job.options.env_vars == {"PLAIN": "visible"}
    assert SECRET not in raw_job

    studio = httpx.get(
        f"{sqlite_server.url}/studio/jobs/{submitted.run_id}",
        headers={"Authorization": f"Bearer {sqlite_server.token}"},
    )
    assert studio.status_code == 200 and SECRET not in studio.text

    # Nothing in the workspace's storage holds the value in the clear.
    time.sleep(0.5)  # let the SQLite WAL settle on disk
    workspace = sqlite_server.cwd / "ws"
    for path in workspace.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_the_job_api_hands_secrets_only_to_the_jobs_own_runner(sqlite_server: Server) -> None:
    """A user (even the submitter, even an owner) cannot start the job by hand: claiming a job
    is its runner's call, made with the job's own token."""
    with Client(sqlite_server.url) as api:
        jobs = api.list_jobs(status="completed", limit=1000)
    assert jobs, "needs the job of the test above"
    with Client(sqlite_server.url) as api:
        response = api.http.post(f"/jobs/{jobs[0].id}/start", json={"host": "x", "pid": 1})
    assert response.status_code == 403 and SECRET not in response.text
    assert "is a runner's call" in response.json()["message"]


@pytest.mark.parametrize("split", range(1, 12))
def test_the_masker_catches_a_value_split_anywhere(split: int) -> None:
    masker = Masker(["abcdefgh", "abc1"])
    stream = b"x abcdefgh y abc1 z abcdefgh"
    out = b"".join(
        masker.feed(stream[i : i + split]) for i in range(0, len(stream), split)
    ) + masker.feed(b"", final=True)
    assert out == b"x *** y *** z ***"


def test_short_values_are_not_masked() -> None:
    masker = Masker(["abc"])
    assert masker.feed(b"abc abc", final=True) == b"abc abc"


def test_a_whole_line_goes_out_at_once_while_a_split_value_waits() -> None:
    masker = Masker(["a-long-secret-value"])
    assert masker.feed(b"waiting\n") == b"waiting\n"
    assert masker.feed(b"key a-long-") == b""
    assert masker.feed(b"secret-value\nmore") == b"key ***\n"
    assert masker.feed(b"", final=True) == b"more"
