"""Shipping a job's log in offset-addressed pieces (``LogShipper``): ordering, the start offset,
retries after a failed append, and the final flush. The workspace's append is played by a list
that keeps what arrives at each offset, and fails when told to."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flowyard.runner import logship
from flowyard.runner.logship import LogShipper


class Receiver:
    """An append that is idempotent per offset, as the workspace's is."""

    def __init__(self, log: bytes = b"") -> None:
        self.log = bytearray(log)
        self.calls: list[tuple[int, int]] = []
        self.failures = 0
        self.lock = threading.Lock()

    def append(self, offset: int, data: bytes) -> int:
        with self.lock:
            self.calls.append((offset, len(data)))
            if self.failures:
                self.failures -= 1
                raise ConnectionError("workspace away")
            assert offset <= len(self.log), "a piece past the end: one was lost"
            self.log[offset : offset + len(data)] = data
            return len(self.log)


def test_everything_arrives_once_in_order_after_the_earlier_attempts(tmp_path: Path) -> None:
    receiver = Receiver(b"attempt 1\n")
    shipper = LogShipper(receiver.append, tmp_path / "log")
    shipper.write(b"before begin: held\n")
    shipper.begin(len(receiver.log))
    for i in range(1000):
        shipper.write(f"line {i}\n".encode())
    shipper.say("done")
    shipper.close()
    expected = b"before begin: held\n" + b"".join(f"line {i}\n".encode() for i in range(1000))
    expected += b"[flowyard] done\n"
    assert bytes(receiver.log) == b"attempt 1\n" + expected
    assert (tmp_path / "log").read_bytes() == expected


def test_a_failed_append_is_retried_from_the_same_offset(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.failures = 3
    shipper = LogShipper(receiver.append, tmp_path / "log")
    shipper.begin(0)
    shipper.write(b"a" * 10)
    shipper.write(b"b" * 10)
    deadline = time.monotonic() + 60
    while len(receiver.calls) < 4:  # the shipper's own loop meets the failures, then succeeds
        assert time.monotonic() < deadline, "the shipper stopped retrying"
        time.sleep(0.05)
    shipper.close()
    assert bytes(receiver.log) == b"a" * 10 + b"b" * 10
    assert {offset for offset, _ in receiver.calls[:4]} == {0}


def test_big_output_goes_in_bounded_pieces(tmp_path: Path) -> None:
    receiver = Receiver()
    shipper = LogShipper(receiver.append, tmp_path / "log")
    shipper.begin(0)
    shipper.write(b"x" * (logship.MAX_PIECE * 3 + 5))
    shipper.close()
    assert len(receiver.log) == logship.MAX_PIECE * 3 + 5
    assert max(size for _, size in receiver.calls) <= logship.MAX_PIECE
    assert [offset for offset, _ in receiver.calls] == sorted(o for o, _ in receiver.calls)


def test_a_full_disk_under_the_local_copy_loses_nothing_sent(tmp_path: Path) -> None:
    """The runner's local copy on a full file system (/dev/full answers every write so): the
    log still reaches the workspace whole, and says the copy stopped."""
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("this system has no /dev/full to stand for a full disk")
    receiver = Receiver()
    shipper = LogShipper(receiver.append, full)
    shipper.begin(0)
    for i in range(100):
        shipper.write(f"line {i}\n".encode())
    shipper.close()
    lines = bytes(receiver.log).decode().splitlines()
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {i}" for i in range(100)]
    assert "local copy of this log stopped" in lines[0] and "No space left" in lines[0]
