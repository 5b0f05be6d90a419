"""A request that does not fit its model is refused (422) in Flowyard's error shape, naming the
field, the rule and the fix."""

from __future__ import annotations

import httpx
import pytest

from flowyard.client import Client
from flowyard.errors import InvalidRequestError
from flowyard.schemas import ComputeType
from flowyard.server.validation import describe
from tests.servers import Server, auth_headers, run_cli

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


def test_the_cli_and_the_sdk_print_the_reason_not_the_status(sqlite_server: Server) -> None:
    result = run_cli(
        *("compute", "create", "Bad_Name", "--type", "process"),
        cwd=sqlite_server.cwd,
        env={"FLOWYARD_WORKSPACE_URL": sqlite_server.url},
    )
    assert result.returncode != 0
    assert "Error: name: String should match pattern" in result.stderr
    assert "use 1 to 63 lowercase letters, digits and dashes" in result.stderr
    assert "422" not in result.stderr
    with Client(sqlite_server.url) as client, pytest.raises(InvalidRequestError) as refused:
        client.create_compute("Bad_Name", ComputeType.PROCESS)
    assert refused.value.message.startswith("name: String should match pattern")


def test_query_fields_say_where_they_are_and_many_problems_are_cut_short() -> None:
    errors = [
        {"type": "missing", "loc": ("query", "offset"), "msg": "Field required"},
        *({"type": "x", "loc": ("body", f"f{i}"), "msg": "bad"} for i in range(5)),
    ]
    message = describe(errors)
    assert message.startswith("offset (in the query): Field required; add it. f0: bad; see ")
    assert message.endswith("And 3 more problems.")
    assert describe([{"type": "missing", "loc": ("body",), "msg": "Field required"}]) == (
        "the body: Field required; add it."
    )
