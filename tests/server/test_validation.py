"""A request that does not fit its model is refused (422) in Flowyard's error shape, naming the
field, the rule and the fix."""

from __future__ import annotations

import httpx

from flowyard.server.validation import describe
from tests.servers import Server, auth_headers

API = "/api/flowyard/v1"


def test_a_bad_name_names_the_field_the_rule_and_the_fix(sqlite_server: Server) -> None:
    answer = httpx.post(
        sqlite_server.url + f"{API}/computes",
        headers=auth_headers(sqlite_server),
        json={"name": "BAD_NAME", "type": "process"},
    )
    assert answer.status_code == 422
    body = answer.json()
    assert body["error_code"] == "INVALID_REQUEST"
    assert body["message"].startswith("name: String should match pattern")
    assert "lowercase letters, digits and dashes" in body["message"]


def test_query_fields_say_where_they_are_and_many_problems_are_cut_short() -> None:
    errors = [
        {"type": "missing", "loc": ("query", "offset"), "msg": "Field required"},
        *({"type": "x", "loc": ("body", f"f{i}"), "msg": "bad"} for i in range(5)),
    ]
    message = describe(errors)
    assert message.startswith("offset (in the query): Field required; add it. f0: bad; see ")
    assert message.endswith("and 3 more.")
    assert describe([{"type": "missing", "loc": ("body",), "msg": "Field required"}]) == (
        "the body: Field required; add it."
    )
