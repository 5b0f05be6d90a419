"""The bookkeeping of which log bytes a job's stderr wrote (flowyard/log_ranges.py), as pure
functions: merging, cutting a piece, forgetting what was sent, checking what a runner sends."""

from __future__ import annotations

from collections import deque

import pytest

from flowyard import log_ranges
from flowyard.errors import InvalidRequestError
from flowyard.log_ranges import MAX_RANGES, Marks, Range


def test_ranges_that_touch_are_merged() -> None:
    ranges: list[Range] = []
    log_ranges.add(ranges, 0, 4)
    log_ranges.add(ranges, 4, 9)
    log_ranges.add(ranges, 9, 9)  # empty: nothing
    log_ranges.add(ranges, 12, 15)
    assert ranges == [(0, 9), (12, 15)]


def test_a_window_is_clipped_and_relative() -> None:
    ranges = [(0, 9), (12, 15), (20, 30)]
    assert log_ranges.window(ranges, 5, 25) == [(0, 4), (7, 10), (15, 20)]
    assert log_ranges.window([[0, 9]], 9, 20) == []


def test_a_piece_carries_at_most_max_ranges_and_ends_before_the_next() -> None:
    ranges = [(i * 10, i * 10 + 5) for i in range(MAX_RANGES + 3)]
    size, carried = log_ranges.piece(ranges, 0, 1_000_000)
    assert len(carried) == MAX_RANGES
    assert size == MAX_RANGES * 10  # the next range's start
    # A piece shorter than the ranges: cut at its limit, its last range clipped.
    assert log_ranges.piece([(3, 50)], 0, 20) == (20, [(3, 20)])
    # From the middle of a range, relative to where the piece starts.
    assert log_ranges.piece([(3, 50), (60, 70)], 10, 100) == (100, [(0, 40), (50, 60)])


def test_what_was_sent_is_forgotten() -> None:
    ranges = deque([(0, 5), (10, 20), (30, 40)])
    log_ranges.drop(ranges, 15)
    assert list(ranges) == [(15, 20), (30, 40)]
    log_ranges.drop(ranges, 40)
    assert not ranges


def test_an_append_parameter_round_trips() -> None:
    ranges = [(0, 12), (40, 95)]
    assert log_ranges.encode(ranges) == "0-12,40-95"
    assert log_ranges.parse("0-12,40-95", 95) == ranges
    assert log_ranges.parse("", 0) == []
    assert log_ranges.parse("0-3,3-5", 5) == [(0, 5)]  # touching: one range


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0-10001", "past the piece"),
        ("5-5", "empty"),
        ("7-3", "empty"),
        ("-1-5", "not START-END"),
        ("0-5,-3-4", "not START-END"),
        ("a-b", "not START-END"),
        ("0-5;6-7", "not START-END"),
        ("0-50,40-60", "overlaps"),
        ("40-60,0-10", "overlaps or precedes"),
        ("1" * 13 + "-" + "2" * 13, "not START-END"),
        (",".join(f"{i}-{i + 1}" for i in range(0, 2 * (MAX_RANGES + 1), 2)), "more than"),
    ],
)
def test_a_runners_bad_ranges_are_refused_with_a_sentence(text: str, says: str) -> None:
    with pytest.raises(InvalidRequestError, match=says) as raised:
        log_ranges.parse(text, 10_000)
    assert raised.value.message.endswith(".")


def test_marks_answer_line_by_line_across_pages() -> None:
    marks = Marks([(5, 8)])
    assert not marks.hit(0, 5)  # ends where the range starts
    assert marks.hit(5, 6)
    assert marks.hit(7, 12)
    assert not marks.hit(8, 12)
    marks.extend([(20, 21)])
    assert not marks.hit(12, 20)
    assert marks.hit(20, 30)
