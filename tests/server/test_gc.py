"""Garbage collection end to end: real blob files in the workspace's store and real job folders
counted before and after; what a snapshot or a submission in flight relies on is kept, during
50 concurrent submissions too; the server collects on its own schedule."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flowyard import caches
from flowyard.client import Client
from flowyard.env import builder
from flowyard.errors import FlowyardError
from flowyard.schemas import JobStatus, JobSubmit
from flowyard.snapshot import build_manifest, materialize, upload
from tests.factories import create_compute, final_job, make_project
from tests.servers import (
    FAST,
    Server,
    fast_workspace,
    free_port,
    fresh_postgres_database,
    init_workspace,
    run_cli,
)

GRACE_S = 4.0


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def workspace(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    # Collected only when asked (the schedule has a test of its own), with a short grace, and
    # an empty bound on the host's blob cache (pruned of what no job used in a while).
    root = tmp_path_factory.mktemp(f"gc-{request.param}")
    env = {
        "FLOWYARD_GC_INTERVAL_S": "3600",
        "FLOWYARD_GC_GRACE_S": str(GRACE_S),
        "FLOWYARD_BLOB_CACHE_MB": "0",
        "FLOWYARD_ENV_CACHE_MB": "0",
    }
    if request.param == "sqlite":
        server = fast_workspace(root, env=env)
        yield server
        server.stop()
        return
    request.applymarker(pytest.mark.postgres)
    for db_url in fresh_postgres_database():
        port = free_port()
        init_workspace(root, port=port)
        server = Server(
            args=["--db-url", db_url, "--artifacts", str(root / "ws" / "artifacts")],
            cwd=root,
            port=port,
            env={**FAST, "XDG_CACHE_HOME": str(root / "cache"), **env},
        ).start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def client(workspace: Server) -> Iterator[Client]:
    with Client(workspace.url) as c:
        yield c


def _blob_files(workspace: Server) -> dict[str, int]:
    root = workspace.cwd / "ws" / "artifacts" / "flowyard" / "blobs"
    return {
        name: os.lstat(os.path.join(folder, name)).st_size
        for folder, _dirs, names in os.walk(root)
        for name in names
    }


def _submit(client: Client, snapshot_id: str, compute: str = "local") -> str:
    job = client.submit_job(
        JobSubmit(
            experiment_id="0",
            snapshot_id=snapshot_id,
            project_uri=".",
            entry_point="main",
            compute=compute,
            user="ignored",
        )
    )
    return job.id


def _project(root: Path, shared: str, own: bytes) -> Path:
    project = make_project(root, "print('hi')\n", files={"shared.txt": shared})
    (project / "own.bin").write_bytes(own)
    return project


def _digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_gc_frees_what_only_a_deleted_job_held_and_keeps_what_others_hold(
    workspace: Server, client: Client, tmp_path: Path
) -> None:
    shared = f"shared {uuid.uuid4()}"
    own_a, own_b = os.urandom(30_000), os.urandom(40_000)
    a = upload(client, _project(tmp_path / "a", shared, own_a))
    b = upload(client, _project(tmp_path / "b", shared, own_b))
    job_a, job_b = _submit(client, a.id), _submit(client, b.id)
    for job in (job_a, job_b):
        client.cancel_job(job)
    client.delete_job(job_a)
    time.sleep(GRACE_S + 1)
    before = _blob_files(workspace)
    assert _digest(own_a) in before and _digest(own_b) in before

    dry = run_cli(
        "gc", "--dry-run", cwd=workspace.cwd, env={"FLOWYARD_WORKSPACE_URL": workspace.url}
    )
    assert dry.returncode == 0, dry.stderr
    assert "would free" in dry.stdout
    assert _blob_files(workspace) == before  # a dry run removes nothing
    planned = client.gc(dry_run=True)
    assert planned.snapshots >= 1 and planned.blobs >= 1

    done = client.gc()

    after = _blob_files(workspace)
    freed = set(before) - set(after)
    assert _digest(own_a) in freed  # only job a's snapshot held it
    assert _digest(own_b) in after and _digest(shared.encode()) in after  # job b's holds these
    assert (done.blobs, done.blob_bytes) == (len(freed), sum(before[d] for d in freed))
    assert (done.snapshots, done.blobs) == (planned.snapshots, planned.blobs)
    assert client.gc().blobs == 0  # nothing left to free
    # What is left still makes job b's snapshot, byte for byte.
    out = materialize(client, b.id, tmp_path / "b-again", cache_dir=tmp_path / "cache")
    assert out.file_count == b.file_count
    assert (tmp_path / "b-again" / "own.bin").read_bytes() == own_b
    with pytest.raises(FlowyardError, match="not in this workspace"):
        _submit(client, a.id)


def test_a_blob_the_workspace_said_it_has_is_kept_for_the_grace_period(
    workspace: Server, client: Client, tmp_path: Path
) -> None:
    """A submission told a blob is stored does not upload it: the collector must not take it
    before the submission's snapshot refers to it."""
    content = os.urandom(10_000)
    digest = _digest(content)
    client.put_blobs([(digest, content)])
    time.sleep(GRACE_S + 1)  # unreferenced and unused: collectable
    assert client.missing_blobs([digest]) == []  # ... until a submission asks about it
    client.gc()
    assert digest in _blob_files(workspace)
    time.sleep(GRACE_S + 1)
    client.gc()
    assert digest not in _blob_files(workspace)
    assert client.missing_blobs([digest]) == [digest]


class _SlowSubmitter(Client):
    """A client whose submission stalls between asking which blobs are missing and creating its
    snapshot, for longer than the grace period, while the workspace collects."""

    stalled = False

    def create_snapshot(self, files: Any) -> Any:
        if not self.stalled:
            self.stalled = True
            time.sleep(GRACE_S + 1)
            assert self.gc().blobs >= 1
        return super().create_snapshot(files)


def test_a_submission_slower_than_the_grace_period_sends_a_collected_blob_again(
    workspace: Server, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "p", "print('slow')\n", files={"data.txt": str(uuid.uuid4())})
    with Client(workspace.url) as client:
        upload(client, project)  # its blobs stored, by a submission long gone
    time.sleep(GRACE_S + 1)
    with _SlowSubmitter(workspace.url) as slow:
        result = upload(slow, project)
        assert slow.stalled
        assert result.uploaded_blobs >= 1  # sent again after the workspace had collected it
        job_id = _submit(slow, result.id)
        out = materialize(slow, result.id, tmp_path / "out", cache_dir=tmp_path / "cache")
        assert out.file_count == result.file_count
        slow.cancel_job(job_id)


def test_gc_during_50_concurrent_submissions_loses_nothing(
    workspace: Server, client: Client, tmp_path: Path
) -> None:
    """Fifty submissions at once, each of a project whose blobs are all stored already and
    unused past the grace period (as an old job's, deleted), and one new file; meanwhile the
    collector runs again and again. Every submitted job's snapshot is whole afterwards, and the
    blobs no submission asked about are collected."""
    shared = {f"lib/m{i}.py": os.urandom(2_000) for i in range(20)}
    projects = []
    for i in range(50):
        root = make_project(tmp_path / f"p{i}", "print('hi')\n")
        for name, content in shared.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
        (root / "own.txt").write_text(f"project {i} {uuid.uuid4()}")
        projects.append(root)
    # Stored before, by a job since deleted: unreferenced, and soon unused past the grace.
    old = upload(client, projects[0])
    old_job = _submit(client, old.id)
    client.cancel_job(old_job)
    client.delete_job(old_job)
    garbage = [os.urandom(1_000) for _ in range(30)]
    client.put_blobs([(_digest(g), g) for g in garbage])
    time.sleep(GRACE_S + 1)

    stop = threading.Event()
    rounds: list[int] = []

    def collect() -> None:
        with Client(workspace.url) as own:
            while not stop.is_set():
                rounds.append(own.gc().blobs)

    def submit(project: Path) -> tuple[str, str]:
        with Client(workspace.url) as own:
            snapshot = upload(own, build_manifest(project))
            return _submit(own, snapshot.id), snapshot.id

    collector = threading.Thread(target=collect)
    collector.start()
    try:
        with ThreadPoolExecutor(10) as pool:
            submitted = list(pool.map(submit, projects))
    finally:
        stop.set()
        collector.join()
    assert len(rounds) >= 2, "the collector did not run during the submissions"
    client.gc()
    files = _blob_files(workspace)
    for i, (job_id, snapshot_id) in enumerate(submitted):
        assert client.get_job(job_id).snapshot_id == snapshot_id
        for f in build_manifest(projects[i]).files:
            assert f.digest in files, f"job {i} lost {f.path}"
    out = materialize(client, submitted[7][1], tmp_path / "check", cache_dir=tmp_path / "c")
    assert out.downloaded_blobs == len(shared) + 2 + 1  # MLproject, main.py, own.txt
    assert not {_digest(g) for g in garbage} & set(files)  # the collector did collect
    for job_id, _ in submitted:
        client.cancel_job(job_id)


def test_gc_removes_ended_jobs_folders_and_prunes_the_blob_cache(
    workspace: Server, client: Client, tmp_path: Path
) -> None:
    create_compute(workspace, "gc-cpu")
    project = make_project(tmp_path / "p", "print('hi')\n", files={"data.bin": "x" * 50_000})
    snapshot = upload(client, project)
    job_id = _submit(client, snapshot.id, "gc-cpu")
    assert final_job(client, job_id).status == JobStatus.COMPLETED
    cache = workspace.cwd / "cache" / "flowyard"
    folder = cache / "jobs" / job_id
    assert folder.is_dir()
    # The runner leaves only its own output: project, storage and log copy go once it has
    # reported the job's end, so a moment after the workspace knows it.
    deadline = time.monotonic() + 30
    while (left := sorted(p.name for p in folder.iterdir())) != ["runner-1.out"]:
        assert time.monotonic() < deadline, f"the runner left {left}"
        time.sleep(0.2)
    blobs = {p.name: p.stat().st_size for p in (cache / "blobs").iterdir()}
    assert _digest(b"x" * 50_000) in blobs
    # A job folder of a job this workspace does not know is not its to remove.
    stranger = cache / "jobs" / uuid.uuid4().hex
    stranger.mkdir()
    (stranger / "keep").write_text("another workspace's")
    # The blobs were used long ago (by this clock), and the server's bound is far below them.
    for name in blobs:
        os.utime(cache / "blobs" / name, (time.time() - 2 * caches.RECENT_USE_S, 0))
    # Two job environments on the host, past its bound of 0 MB: one a job runs in.
    envs = cache / "envs"
    for key in ("idle", "busy"):
        (envs / key).mkdir(parents=True, exist_ok=True)
        (envs / key / "payload").write_bytes(b"x" * 100_000)
        (envs / key / builder.MARKER).write_text("{}")
    held = builder.hold(envs, "busy")
    try:
        done = client.gc()
    finally:
        held.close()

    assert done.job_folders == 1 and done.job_folder_bytes > 0
    assert not folder.exists() and stranger.exists()
    assert (done.cache_blobs, done.cache_bytes) == (len(blobs), sum(blobs.values()))
    assert list((cache / "blobs").iterdir()) == []
    assert done.environments == 1 and done.environment_bytes >= 100_000
    assert not (envs / "idle").exists() and (envs / "busy").is_dir()


def test_the_server_collects_on_its_own_schedule(tmp_path: Path) -> None:
    server = fast_workspace(
        tmp_path, env={"FLOWYARD_GC_INTERVAL_S": "1", "FLOWYARD_GC_GRACE_S": "1"}
    )
    try:
        with Client(server.url) as client:
            content = os.urandom(5_000)
            client.put_blobs([(_digest(content), content)])
            assert _digest(content) in _blob_files(server)
            deadline = time.monotonic() + 60
            while _digest(content) in _blob_files(server):
                assert time.monotonic() < deadline, "the server never collected"
                time.sleep(0.5)
    finally:
        server.stop()
