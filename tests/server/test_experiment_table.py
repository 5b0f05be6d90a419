"""The studio tables' parts below the pages: durations as people write them, MLflow order_by
terms, the query a header link sorts by (ascending first), and the jobs table's filter
choices."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flowyard.errors import InvalidRequestError
from flowyard.server.db.engine import prepare_database
from flowyard.server.db.models import Job
from flowyard.server.services import experiment_table as et
from flowyard.server.services import studio


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0504, "50 ms"),
        (0.9994, "999 ms"),
        (1, "1 s"),
        (42.9, "42 s"),
        (247, "4 min 07 s"),
        (2 * 3600 + 5 * 60 + 59, "2 h 05 min"),
        (3 * 86400 + 4 * 3600 + 1, "3 d 4 h"),
    ],
)
def test_durations_read_as_people_write_them(seconds: float, text: str) -> None:
    assert et.human_duration(seconds) == text


def test_order_by_quotes_names_and_sort_links_go_ascending_first() -> None:
    assert et.order_by("metrics.val/loss 1", desc=False) == "metrics.`val/loss 1` ASC"
    assert et.order_by("attributes.start_time", desc=True) == "attributes.`start_time` DESC"
    q = et.TableQuery(filter="metrics.rmse < 1", sort="metrics.rmse", desc=True, page=3)
    assert q.sort_link("params.alpha") == {
        "filter": "metrics.rmse < 1",
        "sort": "params.alpha",
        "order": "asc",
        "page": "1",
    }
    assert q.sort_link("metrics.rmse")["order"] == "asc"
    ascending = et.TableQuery(sort="metrics.rmse", desc=False)
    assert ascending.sort_link("metrics.rmse")["order"] == "desc"


def test_name_search_picks_a_quote_the_text_lacks() -> None:
    assert et._name_clause("it's") == 'attributes.run_name ILIKE "%it\'s%"'
    assert et._name_clause("plain") == "attributes.run_name ILIKE '%plain%'"
    with pytest.raises(InvalidRequestError, match="both"):
        et._name_clause("a'b\"c")


def test_distinct_values_seek_each_value_in_order(tmp_path: Path) -> None:
    """The jobs table's filter choices: the same values, in the same order, as DISTINCT."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    prepare_database(url, "distinct")
    engine = sa.create_engine(url)
    jobs = sa.table("flowyard_jobs", sa.column("id"), sa.column("user"))
    users = ["bob", "alice", "bob", "carol", "alice", "Zed"]
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("PRAGMA foreign_keys=OFF"))
            for i, user in enumerate(users):
                connection.execute(
                    sa.text(
                        "INSERT INTO flowyard_jobs (id, experiment_id, snapshot_id, project_uri, "
                        "entry_point, parameters, environment, options, compute, status, "
                        "priority, cancel_requested, user, attempt, submitted_at, log_size) "
                        "VALUES (:id, '1', 's', '.', 'main', '{}', '{}', '{}', 'local', "
                        "'completed', 0, 0, :user, 1, '2026-01-01', 0)"
                    ),
                    {"id": f"job{i}", "user": user},
                )
        with Session(engine) as session:
            found = list(session.scalars(studio.distinct_values(Job.user)))
            plain = list(session.scalars(sa.select(jobs.c.user).distinct().order_by(jobs.c.user)))
        assert found == plain == ["Zed", "alice", "bob", "carol"]
    finally:
        engine.dispose()
