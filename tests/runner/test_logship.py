"""Shipping a job's log in offset-addressed pieces (``LogShipper``): ordering, the start offset,
retries after a failed append, and the final flush. The workspace's append is played by a list
that keeps what arrives at each offset, and fails when told to."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from flowyard import log_ranges
from flowyard.log_ranges import Range
from flowyard.runner import logship
from flowyard.runner.logship import LogShipper


class Receiver:
    """An append that is idempotent per offset, as the workspace's is."""

    def __init__(self, log: bytes = b"") -> None:
        self.log = bytearray(log)
        self.calls: list[tuple[int, int]] = []
        # The stderr ranges that arrived, in absolute offsets, as the workspace keeps them.
        self.stderr: list[Range] = []
        self.failures = 0
        self.lock = threading.Lock()

    def append(self, offset: int, data: bytes, stderr: list[Range]) -> int:
        with self.lock:
            self.calls.append((offset, len(data)))
            if self.failures:
                self.failures -= 1
                raise ConnectionError("workspace away")
            assert offset <= len(self.log), "a piece past the end: one was lost"
            # What the workspace checks of every append's ranges.
            assert log_ranges.parse(log_ranges.encode(stderr), len(data)) == stderr
            if offset == len(self.log):
                for a, b in stderr:
                    log_ranges.add(self.stderr, offset + a, offset + b)
            self.log[offset : offset + len(data)] = data
            return len(self.log)

    def lines(self, stderr: bool) -> list[bytes]:
        """The log's lines that hold a byte of a stderr range (or none)."""
        out, at = [], 0
        for line in re.findall(rb"[^\n]*\n|[^\n]+$", bytes(self.log)):
            hit = any(a < at + len(line) and at < b for a, b in self.stderr)
            if hit == stderr:
                out.append(line)
            at += len(line)
        return out


def test_everything_arrives_once_in_order_after_the_earlier_attempts(tmp_path: Path) -> None:
    receiver = Receiver(b"attempt 1\n")
    shipper = LogShipper(receiver.append)
    shipper.write(b"before begin: held\n")
    shipper.begin(len(receiver.log))
    for i in range(1000):
        shipper.write(f"line {i}\n".encode())
    shipper.say("done")
    shipper.close()
    expected = b"before begin: held\n" + b"".join(f"line {i}\n".encode() for i in range(1000))
    expected += b"[flowyard] done\n"
    assert bytes(receiver.log) == b"attempt 1\n" + expected
    assert shipper.tail() == expected[-logship.TAIL_BYTES :].decode()


def test_a_failed_append_is_retried_from_the_same_offset(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.failures = 3
    shipper = LogShipper(receiver.append)
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
    shipper = LogShipper(receiver.append)
    shipper.begin(0)
    shipper.write(b"x" * (logship.MAX_PIECE * 3 + 5))
    shipper.close()
    assert len(receiver.log) == logship.MAX_PIECE * 3 + 5
    assert max(size for _, size in receiver.calls) <= logship.MAX_PIECE
    assert [offset for offset, _ in receiver.calls] == sorted(o for o, _ in receiver.calls)


def test_the_tail_kept_to_read_the_error_from_stays_bounded() -> None:
    """A job printing far more than the tail holds: the runner keeps only the last bytes (its
    host's memory and disk stay flat), and the whole log still reaches the workspace."""
    receiver = Receiver()
    shipper = LogShipper(receiver.append)
    shipper.begin(0)
    for i in range(20_000):
        shipper.write(f"line {i:05d} {'x' * 40}\n".encode())
    shipper.write(b"Traceback (most recent call last):\nValueError: at the end\n")
    shipper.close()
    assert len(receiver.log) > 10 * logship.TAIL_BYTES
    tail = shipper.tail()
    assert len(tail) == logship.TAIL_BYTES
    assert tail.endswith("ValueError: at the end\n") and "line 19999" in tail
    assert "line 00000" not in tail


def test_stderr_lines_are_marked_and_never_cut_a_stdout_line() -> None:
    receiver = Receiver(b"attempt 1\n")
    shipper = LogShipper(receiver.append)
    shipper.begin(len(receiver.log))
    shipper.write(b"loading ")  # a stdout line not ended yet
    shipper.write(b"warning: slow disk\nsecond ", stderr=True)
    shipper.say("a note")  # the runner's own: never stderr, never inside a job's line
    shipper.write(b"data\ndone\n")
    shipper.write(b"line\n", stderr=True)
    shipper.close()
    assert bytes(receiver.log) == (
        b"attempt 1\nwarning: slow disk\n[flowyard] a note\nloading data\ndone\nsecond line\n"
    )
    assert receiver.lines(stderr=True) == [b"warning: slow disk\n", b"second line\n"]


def test_a_line_not_ended_shows_after_the_flush_interval() -> None:
    """A progress bar redrawn with \\r and no newline is not held until the job ends."""
    receiver = Receiver()
    shipper = LogShipper(receiver.append)
    shipper.begin(0)
    shipper.write(b"\rprogress 10%", stderr=True)
    shipper.write(b"\rprogress 20%", stderr=True)
    deadline = time.monotonic() + 30
    while bytes(receiver.log) != b"\rprogress 10%\rprogress 20%":
        assert time.monotonic() < deadline, f"still held: {bytes(receiver.log)!r}"
        time.sleep(0.05)
    shipper.write(b"\rprogress 100%\n", stderr=True)
    shipper.close()
    assert receiver.lines(stderr=True) == [b"\rprogress 10%\rprogress 20%\rprogress 100%\n"]


def test_streams_alternating_line_by_line_go_in_pieces_of_bounded_ranges() -> None:
    receiver = Receiver()
    receiver.failures = 2  # and a retried piece keeps its ranges
    shipper = LogShipper(receiver.append)
    lines = 3 * log_ranges.MAX_RANGES
    for i in range(lines):
        shipper.write(f"out {i}\n".encode())
        shipper.write(f"err {i}\n".encode(), stderr=True)
    size = len(shipper.tail())
    shipper.begin(0)
    deadline = time.monotonic() + 60
    while len(receiver.log) < size:  # the shipper's own loop meets the failures
        assert time.monotonic() < deadline, "the shipper stopped retrying"
        time.sleep(0.05)
    shipper.close()
    assert receiver.lines(stderr=True) == [f"err {i}\n".encode() for i in range(lines)]
    assert receiver.lines(stderr=False) == [f"out {i}\n".encode() for i in range(lines)]
    assert len(receiver.calls) >= 3 + 2
