"""The display's pure rules: phase times, numbers and durations, sparklines, a log's tail, text
for a notebook, the choice of display, the snapshot's line and the run table's escaping."""

from __future__ import annotations

import io
import os
from datetime import UTC, datetime, timedelta

import pytest

from flowyard.client import Client
from flowyard.display import Mode, facts, mode_for
from flowyard.display.lines import SnapshotLine
from flowyard.display.notebook import for_notebook, job_html
from flowyard.display.terminal import TerminalFollower
from flowyard.display.watch import LogTail, sparkline
from flowyard.schemas import ErrorInfo, JobEventOut, JobOut, JobStatus
from flowyard.snapshot import SnapshotResult

T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def _job(steps: list[tuple[float, JobStatus]], **fields: object) -> JobOut:
    events = [
        JobEventOut(at=T0 + timedelta(seconds=s), from_status=None, to_status=status, reason="r")
        for s, status in steps
    ]
    final = steps[-1][1].is_final
    values: dict[str, object] = {
        "id": "a" * 32,
        "run_id": "a" * 32,
        "experiment_id": "1",
        "snapshot_id": "b" * 64,
        "project_uri": ".",
        "entry_point": "main",
        "parameters": {},
        "environment": {},
        "options": {},
        "compute": "cpu-cluster",
        "status": steps[-1][1],
        "priority": 0,
        "cancel_requested": False,
        "user": "ada",
        "attempt": 1,
        "submitted_at": T0,
        "started_at": None,
        "ended_at": events[-1].at if final else None,
        "heartbeat_at": None,
        "exit_code": None,
        "error": None,
        "log_size": 0,
        "max_retries": None,
        "artifact_uri": None,
        "events": events,
        **fields,
    }
    return JobOut.model_validate(values)


def test_phase_times_add_up_over_a_requeue_and_run_to_now() -> None:
    Q, P, R, F = JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING, JobStatus.FINALIZING
    requeued = _job([(0, Q), (2, P), (3, Q), (10, P), (11, R), (41, F), (41.5, JobStatus.FAILED)])
    assert facts.phase_times(requeued) == {Q: 9.0, P: 2.0, R: 30.0, F: 0.5}
    assert facts.total_time(requeued) == 41.5
    assert facts.phases_text(requeued) == (
        "queued 9.0 s · preparing 2.0 s · running 30 s · finalizing 0.5 s"
    )
    running = _job([(0, P), (1, R)])
    now = T0 + timedelta(seconds=61)
    assert facts.phase_times(running, now) == {P: 1.0, R: 60.0}
    assert "queued" not in facts.phases_text(running, now)  # a local job skips the queue


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (9.94, "9.9 s"), (52.4, "52 s"), (185, "3 min 05 s"), (7260, "2 h 01 min")],
)
def test_durations(seconds: float, text: str) -> None:
    assert facts.duration_text(seconds) == text


def test_numbers_as_the_studio_shows_them() -> None:
    values = [3.0, 0.123456, 3.1e-05, 12345678.9, float("nan")]
    assert [facts.number_text(v) for v in values] == ["3", "0.1235", "3.1e-05", "1.235e+07", "nan"]


def test_sparklines() -> None:
    assert sparkline([1.0, 0.5, 1 / 3, 0.25]) == "█▃▂▁"
    assert sparkline([2.0, 2.0]) == "▅▅"
    assert sparkline([]) == ""
    assert len(sparkline([float(i) for i in range(100)], width=10)) == 10


def test_a_log_tail_rewrites_lines_at_carriage_returns() -> None:
    tail = LogTail(keep=3)
    for chunk in [b"one\ntw", b"o\n 10%\r 50%", b"\r100%\n", b"four\n", b"par"]:
        tail.feed(chunk)
    assert tail.last(10) == ["two", "100%", "four", "par"]
    assert tail.last(2) == ["four", "par"]
    assert tail.last(0) == []


def test_text_for_a_notebook_keeps_no_escape_or_control_codes() -> None:
    raw = "\x1b[31mred\x1b[0m \x1b]0;title\x07done\r\n 50%\r100%\x08\x00\n\tok\x1b(B"
    assert for_notebook(raw) == "red done\n 50%\r100%\n\tok"


def test_the_display_is_picked_by_where_the_output_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert mode_for(io.StringIO()) == Mode.LINES
    main, other = os.openpty()
    with os.fdopen(other, "w") as tty:
        monkeypatch.setenv("TERM", "xterm-256color")
        assert mode_for(tty) == Mode.TERMINAL
        assert mode_for(tty, quiet=True) == Mode.LINES  # STREAM_OUTPUT: False
        monkeypatch.setenv("TERM", "dumb")
        assert mode_for(tty) == Mode.LINES
    os.close(main)


def test_the_snapshot_line() -> None:
    cold = SnapshotLine(io.StringIO())
    cold.hashing(3, 3_000_000, 0, 0)
    cold.uploading(3, 3_000_000, 0, 0)
    result = SnapshotResult("c" * 64, 3, 3_000_000, 3, 3_000_000)
    assert cold.text(result) == f"Snapshot {'c' * 12}: 3 files, 3.0 MB; sent 3 files, 3.0 MB"
    warm = SnapshotLine(io.StringIO())
    warm.hashing(1, 10, 2, 2_000_000)
    warm.uploading(1, 10, 2, 2_000_000)
    assert warm.text(SnapshotResult("c" * 64, 3, 2_000_010, 1, 10)) == (
        f"Snapshot {'c' * 12}: 3 files, 2.0 MB; sent 1 file, 10 bytes; "
        "2 files, 2.0 MB already in the workspace; 1 file hashed"
    )
    same = SnapshotLine(io.StringIO())
    same.hashing(0, 0, 3, 2_000_010)
    same.uploading(0, 0, 3, 2_000_010)
    assert same.text(SnapshotResult("c" * 64, 3, 2_000_010, 0, 0)) == (
        f"Snapshot {'c' * 12}: 3 files, 2.0 MB; all already in the workspace"
    )


def test_the_run_table_escapes_what_the_job_says() -> None:
    error = ErrorInfo(type="ValueError", message="<script>alert(1)</script>", exit_code=1)
    job = _job([(0, JobStatus.PREPARING), (1, JobStatus.FAILED)], error=error)
    data = facts.RunData(run_name="<b>x</b>", metrics={"a<b": 1.0})
    html = job_html(Client("http://ws").url, job, data)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "a&lt;b <b>1</b>" in html
    assert "Failed: ValueError" in html and "exit code 1" in html
    assert f"href='http://ws/studio/jobs/{job.id}'" in html


def test_preparation_lines_shipped_after_running_are_still_drawn_as_progress() -> None:
    """The runner reports `running` at once; its last preparation lines may come after."""
    P, R = JobStatus.PREPARING, JobStatus.RUNNING
    out = io.StringIO()
    view = TerminalFollower(Client("http://ws"), out)
    view.start(_job([(0, P)]))
    view.log(b"[flowyard] environment: resolving 2 requirements\nResolved 3 packages in 1ms\n", P)
    view.log(b"[flowyard] environment: installing 3 packages\n[flowyard] environment: bu", R)
    view.log(b"ilt /e (1 s)\n[flowyard] running: python main.py\n 10%\r 100%\nmo", R)
    view.log(b"re", R)
    view.close()
    text = out.getvalue()
    assert "environment: resolving" not in text and "environment: installing" not in text
    assert "Resolved 3 packages in 1ms\n[flowyard] environment: built /e (1 s)\n" in text
    # From the runner's last line on, the entry point's bytes go through untouched.
    assert text.endswith("[flowyard] running: python main.py\n 10%\r 100%\nmore")
