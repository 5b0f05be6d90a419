"""Builders of MLflow projects for tests, and helpers that drive them."""

from __future__ import annotations

import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from flowyard.client import Client
from flowyard.schemas import JobOut, JobStatus

if TYPE_CHECKING:
    from tests.servers import Server

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sklearn_elasticnet"


def make_project(
    root: Path,
    script: str,
    *,
    parameters: str = "{alpha: {type: float, default: 0.5}}",
    command: str = "python main.py --alpha {alpha}",
    extra_mlproject: str = "",
    files: dict[str, str] | None = None,
) -> Path:
    """A folder with an MLproject whose `main` entry point runs ``script`` as main.py."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "MLproject").write_text(
        textwrap.dedent(
            f"""\
            name: test-project
            {extra_mlproject}
            entry_points:
              main:
                parameters: {parameters}
                command: "{command}"
            """
        )
    )
    (root / "main.py").write_text(textwrap.dedent(script))
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def hangs_on_first_attempt(root: Path, marker: Path) -> Path:
    """A project that counts its attempts in ``marker``, hangs on the first (for a test to kill
    its runner) and finishes on the next."""
    return make_project(
        root,
        f"""\
        import time
        with open({str(marker)!r}, "a") as f:
            f.write("x")
        if len(open({str(marker)!r}).read()) == 1:
            time.sleep(300)
        print("second attempt done")
        """,
    )


def waits_for_gate(root: Path, gate: Path) -> Path:
    """A project that prints `waiting`, then nothing until the file ``gate`` exists, then
    `through` (so a test decides when the job makes news)."""
    return make_project(
        root,
        f"""\
        import os, time
        print("waiting", flush=True)
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.05)
        print("through", flush=True)
        """,
    )


def read_news_while_gate_opens(client: Client, run_id: str, gate: Path) -> bytes:
    """Once the job waits at its gate, one long-polled log read, during which the gate opens;
    returns the whole log once the job has ended. Asserts the read answered with news: more log
    or another status, where a read that does not wait would answer "nothing new" at once."""
    deadline = time.monotonic() + 120
    while b"waiting" not in client.read_log(run_id)[0]:
        assert time.monotonic() < deadline, "the job never reached its gate"
        time.sleep(0.1)
    log, status, _ = client.read_log(run_id)
    opener = threading.Timer(0.5, gate.touch)
    opener.start()
    try:
        data, now, size = client.read_log(run_id, len(log), wait=20)
    finally:
        opener.join()
    assert data or now != status, "the waiting read answered with nothing new"
    log += data
    while not now.is_final or len(log) < size:
        data, now, size = client.read_log(run_id, len(log), wait=20)
        log += data
        assert time.monotonic() < deadline, "the job did not end"
    return log


def unstarted_job(
    url: str, headers: dict[str, str], tags: dict[str, str] | None = None
) -> tuple[str, str]:
    """A local job whose runner never starts (a one-file snapshot, submitted through the API,
    its run given ``tags``): its id and its job token."""
    import hashlib
    import uuid

    import httpx

    from flowyard import defaults

    content = uuid.uuid4().bytes
    digest = hashlib.sha256(content).hexdigest()
    with httpx.Client(base_url=url + defaults.API_PREFIX, headers=headers) as api:
        assert api.put(f"/blobs/{digest}", content=content).status_code == 200
        files = [{"path": "main.py", "digest": digest, "size": len(content), "executable": False}]
        snapshot = api.post("/snapshots", json={"files": files}).json()
        job = api.post(
            "/jobs",
            json={
                "experiment_id": "0",
                "snapshot_id": snapshot["id"],
                "project_uri": ".",
                "entry_point": "main",
                "user": "ignored: the token says who submits",
                "tags": tags or {},
            },
        )
        assert job.status_code == 201, job.text
        return str(job.json()["id"]), str(job.json()["runner_token"])


def create_compute(workspace: Server, name: str, *args: str, kind: str = "process") -> None:
    """`flowyard compute create NAME --type KIND ARGS...` against ``workspace``."""
    from tests.servers import run_cli

    result = run_cli(
        *("compute", "create", name, "--type", kind, *args),
        cwd=workspace.cwd,
        env={"FLOWYARD_WORKSPACE_URL": workspace.url},
    )
    assert result.returncode == 0, result.stderr


def process_workspace(folder: Path, compute: str, *args: str) -> Server:
    """A new workspace (short timeouts) with one `process` compute named ``compute``."""
    from tests.servers import fast_workspace

    server = fast_workspace(folder)
    create_compute(server, compute, *args)
    return server


def final_job(client: Client, run_id: str, timeout: float = 180) -> JobOut:
    """The job once its status is final (an AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_job(run_id)
        if job.status.is_final:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {run_id} still {client.get_job(run_id).status} after {timeout} s")


def end_jobs(server: Server, timeout: float = 60) -> None:
    """Cancel every job of ``server``'s that has not ended, and wait until each has: a runner
    whose workspace stops under it keeps retrying for minutes (to outlive a failover), so a
    module's workspace ends its jobs before it stops."""
    with Client(server.url) as client:
        left = [j.run_id for j in client.list_jobs(limit=1000) if not j.status.is_final]
        for run_id in left:
            client.cancel_job(run_id)  # a job that ended meanwhile stays as it ended
        for run_id in left:
            final_job(client, run_id, timeout)


def event_at(job: JobOut, status: JobStatus) -> datetime:
    """When ``job`` first moved to ``status``."""
    return next(e.at for e in job.events if e.to_status == status)
