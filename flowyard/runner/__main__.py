"""`python -m flowyard.runner --workspace URL --job RUN_ID`."""

from __future__ import annotations

import argparse
import os
import sys

# httpx imports its command-line tool (click, rich, pygments: a third of the runner's imports)
# whenever those are installed, and falls back to a stub when the import fails. The runner never
# uses that tool, and every job on every compute waits for these imports before it starts.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from flowyard.errors import ConfigError  # noqa: E402 (after the line above, on purpose)
from flowyard.runner.runner import Runner  # noqa: E402
from flowyard.runner.settings import RunnerSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flowyard.runner", description=__doc__)
    parser.add_argument(
        "--workspace",
        required=True,
        action="append",
        help="the workspace's URL; given again, a URL to fall back to while the first is away",
    )
    # The job's token comes in $FLOWYARD_TOKEN (the client reads it), never on the command line.
    parser.add_argument("--job", required=True, help="the job's id (its MLflow run id)")
    args = parser.parse_args()
    try:
        settings = RunnerSettings.from_env(os.environ)
    except ConfigError as e:
        sys.exit(e.message)
    first, *fallbacks = args.workspace
    sys.exit(Runner(first, args.job, settings=settings, fallback_urls=fallbacks).run())


if __name__ == "__main__":
    main()
