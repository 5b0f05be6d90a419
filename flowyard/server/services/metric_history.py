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
import threading
from collections import OrderedDict
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
    return _history(session, query, None)


def _history(
    session: Session, query: Query, counts: list[tuple[str, str, int]] | None
) -> dict[str, Any]:
    wanted = _known_runs(session, query)
    runs: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in wanted}
    until = query.since_ms or 0
    for run_id, key, total, step, at, value in mlflow_internals.sampled_metric_history(
        session,
        wanted,
        query.points,
        system=query.system,
        keys=query.keys,
        since_ms=query.since_ms,
        counts=counts,
    ):
        series = runs[run_id].get(key)
        if series is None:
            series = runs[run_id][key] = {"total": total, "step": [], "time": [], "value": []}
        series["step"].append(step)
        series["time"].append(at)
        series["value"].append(value)
        until = max(until, at)
    return {"runs": runs, "points": query.points, "until": until}


def _known_runs(session: Session, query: Query) -> list[str]:
    query.check()
    wanted = list(dict.fromkeys(query.run_ids))
    known = mlflow_internals.run_names(session, wanted)
    missing = [r for r in wanted if r not in known]
    if missing:
        raise NotFoundError(f"No run {missing[0]} in this workspace; check the run id.")
    return wanted


@dataclass
class _Answer:
    counts: list[tuple[str, str, int]]
    data: bytes
    gzipped: bytes


# Whole answers, by what was asked, while the histories they hold are unchanged (their values'
# counts, read from an index in milliseconds, are the same): a finished job's charts opened again,
# or by another reader, cost no sampling. A live job's answer is its kept one with the values
# logged since appended (thinned to EXTEND_SHARE of the points), until a history has grown by
# more than that share: then it is sampled again. Bounded in bytes; least recently used go first.
_answers: OrderedDict[tuple[Any, ...], _Answer] = OrderedDict()
_answers_lock = threading.Lock()
CACHE_BYTES = 32 * 1024 * 1024
EXTEND_SHARE = 4  # a quarter


def answer(session: Session, query: Query, accept_encoding: str) -> tuple[bytes, dict[str, str]]:
    """The histories as the route sends them: compact JSON, gzipped when the client takes it."""
    headers = {"Vary": "Accept-Encoding", "Cache-Control": "no-store"}
    gzip_ok = "gzip" in accept_encoding.lower()

    def sent(data: bytes, gzipped: bytes | None = None) -> tuple[bytes, dict[str, str]]:
        if gzip_ok and len(data) >= GZIP_FROM_BYTES:
            body = gzipped or gzip.compress(data, compresslevel=5)
            return body, {**headers, "Content-Encoding": "gzip"}
        return data, headers

    if query.since_ms is not None:
        return sent(_encode(history(session, query)))
    wanted = tuple(_known_runs(session, query))
    counts = mlflow_internals.metric_counts(session, wanted, system=query.system, keys=query.keys)
    cache_key = (wanted, query.keys, query.system, query.points)
    with _answers_lock:
        kept = _answers.get(cache_key)
        if kept is not None:
            _answers.move_to_end(cache_key)
    if kept is not None and kept.counts == counts:
        return sent(kept.data, kept.gzipped)
    if kept is not None and _grew_a_little(kept.counts, counts):
        return sent(_encode(_extended(session, query, json.loads(kept.data), counts)))
    data = _encode(_history(session, query, counts))
    kept = _Answer(counts, data, gzip.compress(data, compresslevel=5))
    with _answers_lock:
        _answers[cache_key] = kept
        while sum(len(a.data) + len(a.gzipped) for a in _answers.values()) > CACHE_BYTES:
            _answers.popitem(last=False)
    return sent(kept.data, kept.gzipped)


def _grew_a_little(before: list[tuple[str, str, int]], now: list[tuple[str, str, int]]) -> bool:
    """Whether the same histories each only grew, by at most 1/EXTEND_SHARE of what they were."""
    if [(r, k) for r, k, _ in before] != [(r, k) for r, k, _ in now]:
        return False
    grown = zip((b for _, _, b in before), (n for _, _, n in now), strict=True)
    return all(b <= n <= b + b // EXTEND_SHARE for b, n in grown)


def _extended(
    session: Session, query: Query, kept: dict[str, Any], counts: list[tuple[str, str, int]]
) -> dict[str, Any]:
    """``kept`` with the values logged since its newest one appended, each history's new part
    thinned to 1/EXTEND_SHARE of the points (its first and last kept)."""
    since = Query(
        run_ids=query.run_ids,
        points=max(MIN_POINTS, query.points // EXTEND_SHARE),
        system=query.system,
        keys=query.keys,
        since_ms=int(kept["until"]),
    )
    new = history(session, since)
    totals = {(r, k): n for r, k, n in counts}
    runs: dict[str, dict[str, dict[str, Any]]] = {}
    for run_id, series in kept["runs"].items():
        runs[run_id] = {}
        for key, old in series.items():
            line = {name: list(old[name]) for name in ("step", "time", "value")}
            added = new["runs"].get(run_id, {}).get(key)
            if added:
                last = (line["step"][-1], line["time"][-1]) if line["step"] else None
                values = zip(added["step"], added["time"], added["value"], strict=True)
                for step, at, value in values:
                    # Values of the kept answer's last millisecond come again: dropped.
                    if last is None or (at, step) > (last[1], last[0]):
                        line["step"].append(step)
                        line["time"].append(at)
                        line["value"].append(value)
            runs[run_id][key] = {"total": totals.get((run_id, key), old["total"]), **line}
    return {"runs": runs, "points": query.points, "until": max(kept["until"], new["until"])}


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
