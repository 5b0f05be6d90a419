"""Reading why a process failed from the end of its log."""

from __future__ import annotations

import re
import signal

from flowyard.runner.api import ErrorReport

_TRACEBACK = "Traceback (most recent call last):"
# "ValueError: bad alpha", "mypkg.errors.TrainingError: ...", or a bare "KeyboardInterrupt".
_EXCEPTION_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<message>.*))?$")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def parse_error(log_tail: str, returncode: int) -> ErrorReport:
    """The failure's exception type, message and traceback (the last one in the log), with the
    exit code, or the signal that ended the process."""
    info = ErrorReport(exit_code=returncode)
    if returncode < 0:
        info.signal = _signal_name(-returncode)
    elif returncode > 128 and returncode - 128 < 65:
        # bash reports a child killed by signal N as 128 + N.
        info.signal = _signal_name(returncode - 128)
    start = log_tail.rfind(_TRACEBACK)
    if start < 0:
        return info
    lines = log_tail[start:].splitlines()
    block = [lines[0]]
    for line in lines[1:]:
        block.append(line)
        if line and not line.startswith((" ", "\t")):
            match = _EXCEPTION_LINE.match(line.strip())
            if match:
                info.type = match.group("type")
                info.message = (match.group("message") or "").strip()
            break
    info.traceback = "\n".join(block)
    return info
