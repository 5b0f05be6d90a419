"""The one retry policy of the client and the runner: which failures are worth another try, and
how long to keep trying.

A workspace restarting, failing over to another replica, or briefly without its database answers
with a connection error or a 502/503/504; another try, with back-off, gets the real answer. Any
other answer from a workspace is its considered one, and trying again would get the same.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
)
from tenacity.stop import stop_base

from flowyard.errors import (
    DatabaseUnavailableError,
    FlowyardError,
    WorkspaceUnreachableError,
)

# Sending one of these twice changes nothing the first did not; a POST may (a second job).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT"})


def transient(error: BaseException) -> bool:
    """Whether ``error`` may go away by itself: unreachable, unavailable, or a 5xx the server
    did not explain."""
    return isinstance(error, WorkspaceUnreachableError | DatabaseUnavailableError) or (
        type(error) is FlowyardError
    )


def retrying(
    deadline_s: float,
    give_up: threading.Event | None = None,
    worth: Callable[[BaseException], bool] = transient,
) -> Retrying:
    """Tries a call until it succeeds, fails in a way not ``worth`` another try, ``deadline_s``
    has passed or ``give_up`` is set; the last failure is raised as it was."""
    stop: stop_base = stop_after_delay(deadline_s)
    if give_up is not None:
        stop = stop | stop_when_event_set(give_up)
    return Retrying(
        retry=retry_if_exception(worth),
        wait=wait_exponential(multiplier=0.2, max=5),
        stop=stop,
        reraise=True,
    )
