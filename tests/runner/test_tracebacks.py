"""Why a process failed, read from the end of its log (``parse_error``): a pure rule."""

from __future__ import annotations

import pytest

from flowyard.runner.tracebacks import parse_error

LOG = """\
epoch 1 loss 0.3
Traceback (most recent call last):
  File "train.py", line 3, in <module>
    first()
ValueError: first failure
handling it...
Traceback (most recent call last):
  File "/work/train.py", line 12, in <module>
    main(alpha)
  File "/work/train.py", line 8, in main
    raise mypkg.errors.TrainingError("alpha 3.0 is out of range: 0 < alpha <= 1")
mypkg.errors.TrainingError: alpha 3.0 is out of range: 0 < alpha <= 1
[flowyard] the entry point exited with code 1
"""


def test_the_last_traceback_gives_type_message_and_frames() -> None:
    info = parse_error(LOG, 1)
    assert info.type == "mypkg.errors.TrainingError"
    assert info.message == "alpha 3.0 is out of range: 0 < alpha <= 1"
    assert info.exit_code == 1 and info.signal is None
    assert info.traceback is not None
    assert info.traceback.startswith('Traceback (most recent call last):\n  File "/work/train.py"')
    assert info.traceback.endswith("TrainingError: alpha 3.0 is out of range: 0 < alpha <= 1")
    assert "first failure" not in info.traceback and "[flowyard]" not in info.traceback


def test_an_exception_without_a_message() -> None:
    info = parse_error(
        'Traceback (most recent call last):\n  File "x", line 1\nKeyboardInterrupt\n', 1
    )
    assert (info.type, info.message) == ("KeyboardInterrupt", "")


def test_a_failure_without_a_traceback_keeps_only_the_exit_code() -> None:
    info = parse_error("make: *** [all] Error 3\n", 3)
    assert info.exit_code == 3
    assert info.type is info.message is info.traceback is info.signal is None


def test_a_cut_off_traceback_is_kept_without_a_type() -> None:
    info = parse_error('Traceback (most recent call last):\n  File "x", line 1, in f\n', 1)
    assert info.type is None and info.traceback is not None and info.traceback.count("\n") == 1


@pytest.mark.parametrize(
    ("returncode", "signal"),
    [(-15, "SIGTERM"), (-9, "SIGKILL"), (137, "SIGKILL"), (130, "SIGINT"), (-99, "signal 99"),
     (1, None), (0, None), (200, None)],
)  # fmt: skip
def test_signals_from_the_process_or_from_bash(returncode: int, signal: str | None) -> None:
    assert parse_error("", returncode).signal == signal
