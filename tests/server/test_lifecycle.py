"""The lifecycle's rules, without a server: the whole transition table, what a retry resets, which
moves the MLflow run follows, and the hold on a job's run that its entry point tries to end."""

from __future__ import annotations

import itertools

import pytest

from flowyard.errors import ConflictError
from flowyard.server.services import lifecycle
from flowyard.status import JobStatus

Q, P, R, F = JobStatus.QUEUED, JobStatus.PREPARING, JobStatus.RUNNING, JobStatus.FINALIZING
DONE, FAIL, CANCEL = JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED

# Every move the lifecycle allows, written out by hand: forward one step, fail or cancel, or back
# to the queue as a retry, from any status that is not final.
ALLOWED = {
    (Q, P), (Q, FAIL), (Q, CANCEL),
    (P, R), (P, FAIL), (P, CANCEL), (P, Q),
    (R, F), (R, FAIL), (R, CANCEL), (R, Q),
    (F, DONE), (F, FAIL), (F, CANCEL), (F, Q),
}  # fmt: skip


@pytest.mark.parametrize(("current", "to"), list(itertools.product(JobStatus, JobStatus)))
def test_table(current: JobStatus, to: JobStatus) -> None:
    if current == to:
        assert lifecycle.check(current, to, "j") is None  # a repeated report changes nothing
    elif (current, to) in ALLOWED:
        assert lifecycle.check(current, to, "j") == lifecycle.Move("j", current, to)
    else:
        with pytest.raises(ConflictError, match=f"Job j cannot go from {current} to {to}"):
            lifecycle.check(current, to, "j")


@pytest.mark.parametrize(("current", "to"), sorted(ALLOWED))
def test_run_follows_the_job(current: JobStatus, to: JobStatus) -> None:
    run_status = lifecycle.Move("j", current, to).run_status
    mirrored = {
        Q: "SCHEDULED",
        P: "SCHEDULED",
        R: "RUNNING",
        F: "RUNNING",
        DONE: "FINISHED",
        FAIL: "FAILED",
        CANCEL: "KILLED",
    }
    if to.is_final or mirrored[to] != mirrored[current]:
        assert run_status == mirrored[to]
    else:  # queued → preparing, running → finalizing, preparing → queued: the run stays
        assert run_status is None


def test_retry_is_the_next_attempt_without_a_runner() -> None:
    assert lifecycle.retry_fields(2, "runner lost") == {
        "attempt": 3,
        "runner": None,
        "external_id": None,
        "heartbeat_at": None,
        "waiting_reason": "runner lost",
    }


@pytest.mark.parametrize("status", ["FINISHED", "FAILED", "KILLED"])
def test_an_ending_update_keeps_the_run_running(status: str) -> None:
    body = {"run_id": "r", "status": status, "end_time": 5, "run_name": "n"}
    assert lifecycle.hold_run(body) == {"run_id": "r", "status": "RUNNING", "run_name": "n"}


@pytest.mark.parametrize("status", [None, "RUNNING", "SCHEDULED"])
def test_other_updates_pass(status: str | None) -> None:
    body = {"run_id": "r", "run_name": "renamed"} | ({"status": status} if status else {})
    assert lifecycle.hold_run(body) == body
