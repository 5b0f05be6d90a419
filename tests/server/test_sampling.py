"""The rule that thins a metric history for the charts (mlflow_internals.sampled_metric_history),
on a real SQLite database with MLflow's schema: every k-th value by step, the first and last kept,
whether the steps are dense (found from the index's two ends) or not (read from the index)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.server import mlflow_internals
from flowyard.server.db.engine import prepare_database

RUN = "a" * 32
POINTS = 50


def _lines() -> dict[str, list[int]]:
    return {
        "dense": list(range(1000)),
        "dense from 7": list(range(7, 507)),
        "every tenth": list(range(0, 5000, 10)),
        "gaps": [s for s in range(700) if s % 97],
        "short": list(range(POINTS)),
        "one past": list(range(POINTS + 1)),
        "repeats": [s // 2 for s in range(400)],
    }


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    db = Path(tmp_path_factory.mktemp("sampling")) / "workspace.db"
    url, _ = prepare_database(f"sqlite:///{db}", "sampling")
    engine = sa.create_engine(url)
    metrics = sa.Table("metrics", sa.MetaData(), autoload_with=engine)
    rows = [
        {"key": key, "value": float(step) + i / 1000, "timestamp": 1_000 + i, "run_uuid": RUN,
         "step": step, "is_nan": False}
        for key, steps in _lines().items()
        for i, step in enumerate(steps)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(metrics.insert(), rows)
    with Session(engine) as session:
        yield session
    engine.dispose()


def _expected(steps: list[int]) -> list[int]:
    """Every k-th distinct step and the last, k the smallest stride that keeps <= POINTS."""
    if len(steps) <= POINTS:
        return steps
    distinct = sorted(set(steps))
    stride = -(-len(distinct) // (POINTS - 1))
    return sorted({*distinct[::stride], distinct[-1]})


def test_each_line_keeps_every_kth_step_its_first_and_its_last(session: Session) -> None:
    got: dict[str, list[int]] = {}
    totals: dict[str, int] = {}
    for _, key, total, step, _, _ in mlflow_internals.sampled_metric_history(
        session, [RUN], POINTS
    ):
        got.setdefault(key, []).append(step)
        totals[key] = total
    for key, steps in _lines().items():
        assert totals[key] == len(steps), key
        if key == "repeats":
            continue  # two values a step: thinned again by position, below
        assert got[key] == _expected(steps), key
        assert len(got[key]) <= POINTS, key
        assert got[key][0] == steps[0] and got[key][-1] == steps[-1], key


def test_a_line_repeating_steps_is_read_from_the_index_and_kept_under_the_bound(
    session: Session,
) -> None:
    rows = list(mlflow_internals.sampled_metric_history(session, [RUN], POINTS, keys=["repeats"]))
    steps = [r[3] for r in rows]
    assert len(rows) <= POINTS
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == 199
