"""The experiment table's pure parts: durations as people write them, MLflow order_by terms,
and the query a header link sorts by (ascending first)."""

from __future__ import annotations

import pytest

from flowyard.errors import InvalidRequestError
from flowyard.server.services import experiment_table as et


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
    q = et.TableQuery(filter="metrics.rmse < 1", sort="metrics.rmse", desc=True, page=3, token="t")
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
