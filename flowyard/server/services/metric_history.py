"""Metric histories for the studio's charts: sampled in the database, compact on the wire.

MLflow's own UI asks ``get-history-bulk-interval`` once per metric, and its answer repeats the
key and run id on every point; a job with 20 metrics is 20 requests. Here one request answers
every metric of up to :data:`MAX_RUNS` runs, each history thinned to at most ``points`` values
by the database (see :func:`mlflow_internals.sampled_metric_history`), as columns::

    {"runs": {RUN_ID: {KEY: {"total": 5000, "step": [...], "time": [...], "value": [...]}}},
     "points": 500, "until": 1764590000000}

``time`` is milliseconds since the epoch; ``value`` is null for NaN and infinities; ``total`` is
how many values the run logged under that key (in the asked time window), so a page can say a
chart is sampled. ``until`` is the newest time in the answer: a live page asks again with
``since=until`` for the values logged since (the ones logged in that same millisecond come again;
the page drops what it has).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from flowyard.errors import InvalidRequestError, NotFoundError
from flowyard.server import mlflow_internals

MAX_RUNS = 100
MIN_POINTS, MAX_POINTS = 10, 5000
DEFAULT_POINTS = 500
# Smaller bodies are sent as they are: compressing them saves nothing worth the time.
GZIP_FROM_BYTES = 1024


@dataclass(frozen=True)
class Query:
    run_ids: list[str]
    points: int = DEFAULT_POINTS
    system: bool | None = None
    keys: tuple[str, ...] = ()
    since_ms: int | None = None

    def check(self) -> None:
        if not self.run_ids:
            raise InvalidRequestError("Name at least one run: ?run=RUN_ID (repeat for more).")
        if len(self.run_ids) > MAX_RUNS:
            raise InvalidRequestError(
                f"{len(self.run_ids)} runs asked for; ask for at most {MAX_RUNS} at once."
            )
        if not MIN_POINTS <= self.points <= MAX_POINTS:
            raise InvalidRequestError(
                f"points={self.points} is out of range; give {MIN_POINTS} to {MAX_POINTS}."
            )


def history(session: Session, query: Query) -> dict[str, Any]:
    """The sampled histories (see the module's docstring); unknown runs raise NotFoundError."""
    query.check()
    wanted = list(dict.fromkeys(query.run_ids))
    known = mlflow_internals.run_names(session, wanted)
    missing = [r for r in wanted if r not in known]
    if missing:
        raise NotFoundError(f"No run {missing[0]} in this workspace; check the run id.")
    runs: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in wanted}
    until = query.since_ms or 0
    for run_id, key, total, step, at, value in mlflow_internals.sampled_metric_history(
        session,
        wanted,
        query.points,
        system=query.system,
        keys=query.keys,
        since_ms=query.since_ms,
    ):
        series = runs[run_id].get(key)
        if series is None:
            series = runs[run_id][key] = {"total": total, "step": [], "time": [], "value": []}
        series["step"].append(step)
        series["time"].append(at)
        series["value"].append(value)
        until = max(until, at)
    return {"runs": runs, "points": query.points, "until": until}


def encode(body: dict[str, Any], accept_encoding: str) -> tuple[bytes, dict[str, str]]:
    """The answer as compact JSON, gzipped when the client takes it and it is worth it."""
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-store"}
    if len(data) >= GZIP_FROM_BYTES and "gzip" in accept_encoding.lower():
        data = gzip.compress(data, compresslevel=5)
        headers["Content-Encoding"] = "gzip"
    return data, headers
