"""Output that is not a terminal (a file, CI): plain lines, at most one per phase; and what the
snapshot tells its progress as it hashes and uploads."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path

from flowyard import Workspace
from flowyard.client import Client
from flowyard.snapshot import SnapshotResult, build_manifest, upload
from tests.display.conftest import terminal_env
from tests.factories import final_job, make_project, waits_for_gate
from tests.servers import FLOWYARD, Server

ESCAPES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Recorded:
    """A snapshot progress that notes what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[int, ...]]] = []
        self.advanced = [0, 0]
        self.lock = threading.Lock()

    def hashing(self, files: int, size: int, unchanged_files: int, unchanged_size: int) -> None:
        self.calls.append(("hashing", (files, size, unchanged_files, unchanged_size)))

    def uploading(self, files: int, size: int, present_files: int, present_size: int) -> None:
        self.calls.append(("uploading", (files, size, present_files, present_size)))

    def advance(self, size: int, files: int = 0) -> None:
        with self.lock:
            self.advanced[0] += size
            self.advanced[1] += files

    def done(self, result: SnapshotResult) -> None:
        self.calls.append(("done", (result.uploaded_blobs,)))


def test_a_snapshot_reports_what_it_hashes_sends_and_skips(
    workspace: Server, tmp_path: Path
) -> None:
    root = make_project(tmp_path / "p", "print(1)\n", files={"same.py": "print(1)\n"})
    (root / "big.bin").write_bytes(os.urandom(2_500_000))  # streamed alone, in chunks
    (root / "small.bin").write_bytes(os.urandom(1000))
    files = sorted(p for p in root.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    for path in files:  # written an hour ago, so their hashes are kept
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    client = Client(workspace.url)

    cold = Recorded()
    result = upload(client, build_manifest(root, progress=cold), progress=cold)
    main_py = (root / "main.py").stat().st_size  # main.py and same.py: one blob, sent once
    assert cold.calls == [
        ("hashing", (5, total, 0, 0)),
        ("uploading", (4, total - main_py, 0, 0)),
        ("done", (4,)),
    ]
    assert cold.advanced == [total + total - main_py, 5 + 4]
    assert result.uploaded_blobs == 4

    warm = Recorded()
    upload(client, build_manifest(root, progress=warm), progress=warm)
    assert warm.calls == [
        ("hashing", (0, 0, 5, total)),
        ("uploading", (0, 0, 5, total)),
        ("done", (0,)),
    ]
    assert warm.advanced == [0, 0]


def test_without_a_terminal_one_line_per_phase(workspace: Server, tmp_path: Path) -> None:
    """STREAM_OUTPUT false into a file, behind a job on a compute of one slot; then streamed."""
    env = terminal_env(FLOWYARD_WORKSPACE_URL=workspace.url, XDG_CACHE_HOME=str(tmp_path / "c"))
    gate = tmp_path / "gate"
    blocker = waits_for_gate(tmp_path / "blocker", gate)
    detached = subprocess.run(
        [*FLOWYARD, "run", str(blocker), "--compute", "one-slot", "--no-stream", "--detach"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    project = make_project(
        tmp_path / "p", "print('hello')\n", parameters="{}", command="python main.py"
    )
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        quiet = subprocess.Popen(
            [*FLOWYARD, "run", ".", "--compute", "one-slot", "--no-stream"],
            cwd=project,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 60
            while "queued on" not in out.read_text():
                assert quiet.poll() is None and time.monotonic() < deadline, out.read_text()
                time.sleep(0.1)
        finally:
            gate.touch()
        assert quiet.wait(120) == 0, err.read_text()
    final_job(Client(workspace.url), detached.stdout.strip())
    printed, said = out.read_text(), err.read_text()
    assert not ESCAPES.search(printed + said), repr(printed + said)
    assert len(re.findall(r"^Snapshot [0-9a-f]{12}: ", said, re.M)) == 1, said
    [job_id] = re.findall(r"^Job ([0-9a-f]{32}) on one-slot: http", printed, re.M)
    assert re.findall(r"^queued on .*$", printed, re.M) == [
        "queued on one-slot: 1 of 1 slots busy, 0 ahead"
    ]
    assert "hello" not in printed and "[flowyard]" not in printed  # the log is not shown
    assert re.search(
        rf"^Job {job_id} completed in [\d.]+ s on one-slot \(queued [\d.]+ s · preparing [\d.]+ s"
        rf" · running [\d.]+ s · finalizing [\d.]+ s\): {workspace.url}/studio/jobs/{job_id}$",
        printed,
        re.M,
    ), printed

    streamed = subprocess.run(
        [*FLOWYARD, "run", "."], cwd=project, env=env, capture_output=True, text=True, check=True
    )
    assert not ESCAPES.search(streamed.stdout + streamed.stderr)
    assert (
        "\nhello\n" in streamed.stdout and "[flowyard] running: python main.py" in streamed.stdout
    )
    assert re.search(
        r"^Job [0-9a-f]{32} completed in .* on local \(preparing", streamed.stdout, re.M
    )

    # Watched from elsewhere, into a file: a line per status change, then the closing line.
    watched = subprocess.run(
        [*FLOWYARD, "job", "watch", job_id], env=env, capture_output=True, text=True, check=False
    )
    assert watched.returncode == 0, watched.stderr
    assert not ESCAPES.search(watched.stdout)
    steps = re.findall(r"^\d\d:\d\d:\d\d (\w+): ", watched.stdout, re.M)
    assert steps == ["queued", "preparing", "running", "finalizing", "completed"], watched.stdout
    assert f"Job {job_id} completed in " in watched.stdout

    # The SDK's own handle on it, as a notebook shows it.
    job = Workspace.get(workspace.url).get_job(job_id)
    assert repr(job) == f"Job(run_id='{job_id}', status='completed', compute='one-slot')"
    assert ">completed</b>" in job._repr_html_()
    assert job.wait() is True
