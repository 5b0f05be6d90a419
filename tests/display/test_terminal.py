"""A job seen from a real terminal (tmux): the snapshot's upload progress, the queue's line, the
environment build's phases, the closing summary and error box, and `flowyard job watch`."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from flowyard.client import Client
from flowyard.schemas import JobStatus
from tests.display.conftest import Tmux, terminal_env
from tests.factories import final_job, make_project, waits_for_gate
from tests.servers import Server

pytestmark = pytest.mark.slow

TRAIN = """\
import os, mlflow
for step in range(4):
    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
os.makedirs("outputs", exist_ok=True)
with open("outputs/model.txt", "w") as f:
    f.write("weights")
print("trained", flush=True)
"""


def _open(tmux_terminal: Tmux, workspace: Server, cwd: Path, tmp_path: Path) -> Tmux:
    env = terminal_env(FLOWYARD_WORKSPACE_URL=workspace.url, XDG_CACHE_HOME=str(tmp_path / "cache"))
    tmux_terminal.start(cwd, env)
    return tmux_terminal


def _job_id(screen: str) -> str:
    m = re.search(r"Job ([0-9a-f]{32}) on ", screen)
    assert m, screen
    return m.group(1)


def test_upload_progress_then_the_closing_summary(
    tmux_terminal: Tmux, workspace: Server, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "p", TRAIN, parameters="{}", command="python main.py")
    data = project / "data"
    data.mkdir()
    for i in range(40):
        (data / f"part-{i:02d}.bin").write_bytes(os.urandom(400_000))
    (data / "big.bin").write_bytes(os.urandom(12_000_000))
    terminal = _open(tmux_terminal, workspace, project, tmp_path)

    terminal.type("flowyard run . --experiment terminal; echo EXIT=$?")
    screen = terminal.wait_for(r"EXIT=\d+").string
    assert "EXIT=0" in screen, screen
    # The bars were drawn (then replaced by one line): files, bytes, rate, time left.
    raw = terminal.recorded()
    assert re.search(r"hashing .*\d+/43 files", raw), raw
    # (The workspace may hold MLproject already, from another test's project.)
    assert re.search(r"uploading .*\d+/4[23] files .*MB/s", raw), raw
    assert re.search(
        r"Snapshot [0-9a-f]{12}: 43 files, 28\.\d MB; sent 4[23] files, 28\.\d MB in", screen
    )
    assert "trained" in screen
    run_id = _job_id(screen)
    # The closing box: status, time per phase, last metric values, outputs, links.
    assert re.search(rf"Job {run_id} completed in [\d.]+ s on local", screen), screen
    assert re.search(r"time +preparing [\d.]+ s · running [\d.]+ s · finalizing [\d.]+ s", screen)
    assert re.search(r"metrics +loss 0\.25\b", screen), screen
    assert re.search(r"outputs +1 in outputs/: model\.txt \(7 bytes\)", screen), screen
    assert re.search(rf"studio +{workspace.url}/studio/jobs/{run_id}", screen), screen
    assert re.search(rf"mlflow +{workspace.url}/#/experiments/\d+/runs/{run_id}", screen)

    # Unchanged, the project is not sent again; the job submitted elsewhere can be watched.
    terminal.type("clear; ID=$(flowyard run . --experiment terminal --detach)")
    terminal.wait_for(r"all already in the workspace")
    terminal.type("flowyard job watch $ID; echo WATCHED=$?")
    screen = terminal.wait_for(r"WATCHED=\d+").string
    assert "WATCHED=0" in screen, screen
    assert re.search(r"loss +0\.25 +[▁-█]{4}", screen), screen  # its sparkline, 4 points
    assert "timeline" in screen and "entry point started" in screen
    assert re.search(r"│ trained", screen), screen  # the log's tail
    assert re.search(r"Job [0-9a-f]{32} completed in", screen), screen


def test_the_queue_line_then_the_error_box(
    tmux_terminal: Tmux, workspace: Server, tmp_path: Path
) -> None:
    """A job waits behind two others on a compute with one slot, moving up; then it fails."""
    gates = [tmp_path / "gate-1", tmp_path / "gate-2"]
    client = Client(workspace.url)
    project = make_project(
        tmp_path / "p",
        "raise ValueError('alpha 0.9 is too large')\n",
        parameters="{}",
        command="python main.py",
    )
    terminal = _open(tmux_terminal, workspace, project, tmp_path)
    ahead = []
    for i, gate in enumerate(gates):
        blocker = waits_for_gate(tmp_path / f"blocker-{i}", gate)
        terminal.type(f"clear; flowyard run {blocker} --compute one-slot --no-stream --detach")
        ahead.append(terminal.wait_for(r"Job ([0-9a-f]{32}) on one-slot").group(1))
    try:
        terminal.type("clear; flowyard run . --compute one-slot --experiment queue; echo EXIT=$?")
        # The live line, kept up to date while the job waits: one job ahead, then none.
        terminal.wait_for(r"queued on one-slot: 1 of 1 slots busy, 1 ahead +\d", timeout=60)
        gates[0].touch()
        terminal.wait_for(r"queued on one-slot: 1 of 1 slots busy, 0 ahead +\d", timeout=60)
    finally:
        for gate in gates:
            gate.touch()
    assert all(final_job(client, a).status == JobStatus.COMPLETED for a in ahead)
    screen = terminal.wait_for(r"EXIT=\d+").string
    assert "EXIT=1" in screen, screen
    # Once dispatched, one line says how long it waited, before the runner's first line.
    waited = re.search(r"queued on one-slot: 1 of 1 slots busy, 0 ahead for [\d.]+ s", screen)
    assert waited and waited.end() < screen.index("[flowyard] job "), screen
    # The error box, as the studio shows it, above the summary box.
    assert re.search(r"Failed: ValueError", screen), screen
    assert "alpha 0.9 is too large" in screen
    assert re.search(r"exit code 1 · the whole log: flowyard job logs [0-9a-f]{32}", screen)
    assert re.search(r"Job [0-9a-f]{32} failed in [\d.]+ s on one-slot", screen), screen
    assert re.search(r"time +queued [\d.]+ s · preparing", screen), screen


def test_an_environment_build_shows_its_phases(
    tmux_terminal: Tmux, workspace: Server, tmp_path: Path
) -> None:
    project = make_project(
        tmp_path / "p",
        "import six\nprint('six', six.__version__)\n",
        parameters="{}",
        command="python main.py",
    )
    (project / "python_env.yaml").write_text('python: "3.11"\ndependencies:\n  - six==1.16.0\n')
    terminal = _open(tmux_terminal, workspace, project, tmp_path)
    terminal.type(
        f"UV_CACHE_DIR={tmp_path / 'uv-cache'} flowyard run . --use-conda --experiment env; "
        "echo EXIT=$?"
    )
    screen = terminal.wait_for(r"EXIT=\d+", timeout=240).string
    assert "EXIT=0" in screen, screen
    assert "six 1.16.0" in screen
    raw = terminal.recorded()
    # Each phase was drawn on the live line, with its counts, in place of the log's phase lines.
    assert re.search(r"environment: resolving 2 requirements", raw), raw
    assert re.search(r"environment: downloading \d+ packages", raw), raw
    assert re.search(r"environment: installing \d+ packages", raw), raw
    assert not re.search(r"\[flowyard\] environment: (resolving|downloading|installing)", raw)
    # The live line is gone; uv's own lines and the runner's stay.
    assert re.search(r"Resolved \d+ packages", screen), screen
    assert re.search(r"\[flowyard\] environment: built .* \([\d.]+ s\)", screen), screen
