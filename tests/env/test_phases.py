"""An environment build's phase lines: written from uv's output as it goes by, read back by
whatever follows the job's log."""

from __future__ import annotations

from flowyard.env import phases
from flowyard.env.phases import Phase

# uv pip install's output with progress off, as the builder streams it (cut mid-line anywhere).
UV_OUTPUT = b"""\
Using Python 3.11.7 environment at: /cache/envs/.build-1
Resolved 42 packages in 543ms
Downloading databricks-sdk (1.1MiB)
Downloading cryptography (4.5MiB)
   Building legacy==1.0
 Downloaded databricks-sdk
      Built legacy==1.0
 Downloaded cryptography
Prepared 42 packages in 589ms
Installed 42 packages in 83ms
 + six==1.16.0
"""


def _watch(output: bytes, cut: int) -> list[str]:
    written: list[bytes] = []
    watcher = phases.UvWatcher(written.append)
    watcher(output[:cut])
    watcher(output[cut:])
    passed = b"".join(w for w in written if not w.startswith(phases.PREFIX.encode()))
    assert passed == output  # uv's own output goes on untouched
    return [w.decode() for w in written if w.startswith(phases.PREFIX.encode())]


def test_uv_output_becomes_one_line_per_phase_and_download() -> None:
    expected = [
        "[flowyard] environment: downloading 42 packages\n",
        "[flowyard] environment: downloaded databricks-sdk (1 of 3)\n",
        "[flowyard] environment: downloaded legacy==1.0 (2 of 3)\n",
        "[flowyard] environment: downloaded cryptography (3 of 3)\n",
        "[flowyard] environment: installing 42 packages\n",
    ]
    for cut in (0, 40, 75, 200, len(UV_OUTPUT)):
        assert _watch(UV_OUTPUT, cut) == expected


def test_phase_lines_read_back() -> None:
    assert phases.resolving_line(1) == b"[flowyard] environment: resolving 1 requirement\n"
    resolving = phases.parse(phases.resolving_line(3).decode())
    assert resolving == Phase("resolving", 3)
    downloading = phases.parse("[flowyard] environment: downloading 42 packages\r\n")
    assert downloading == Phase("downloading", 42)
    one = phases.parse("[flowyard] environment: downloaded numpy (1 of 2)", downloading)
    assert one == Phase("downloading", 42, 1, 2, "numpy")
    assert phases.parse("[flowyard] environment: installing 1 package") == Phase("installing", 1)
    # The runner's other environment lines, and anyone else's, are not phases.
    assert phases.parse("[flowyard] environment: built /envs/abc (1.5 s)") is None
    assert phases.parse("environment: resolving 3 requirements") is None
