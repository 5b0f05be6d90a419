"""Flowyard's API against its own OpenAPI schema, with inputs schemathesis makes up (valid ones
and invalid ones): never a 5xx, and every answer shaped as the schema says.

The run is bounded and derandomized, so CI sees the same few hundred requests each time; set
FLOWYARD_FUZZ_EXAMPLES to a larger number for a longer, random run on a developer's machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from flowyard import defaults
from tests.servers import Server, auth_headers, free_port, fresh_postgres_database, init_workspace

EXAMPLES = int(os.environ.get("FLOWYARD_FUZZ_EXAMPLES", "0")) or 15


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def fuzzed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server and database of its own: the junk made up here must not reach other tests'."""
    project = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    if request.param == "sqlite":
        port = free_port()
        init_workspace(project, port=port)
        server = Server(args=[], cwd=project, port=port).start()
        yield server
        server.stop()
        return
    databases = fresh_postgres_database()  # skips when no PostgreSQL answers
    db_url = next(databases)
    artifacts = str(project / "artifacts")
    server = Server(args=["--db-url", db_url, "--artifacts", artifacts], cwd=project).start()
    yield server
    server.stop()
    next(databases, None)


def test_the_api_keeps_its_schema(fuzzed_server: Server) -> None:
    # schemathesis.pytest.from_fixture, the way to load a schema from a server a fixture starts,
    # fails on pytest 9.2 (it sets Node._nodeid, which pytest no longer has), so each operation
    # is driven here with Hypothesis directly.
    api = schemathesis.openapi.from_url(
        f"{fuzzed_server.url}{defaults.API_PREFIX}/openapi.json",
        headers=auth_headers(fuzzed_server),
    )
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        cases = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES,
            derandomize=not os.environ.get("FLOWYARD_FUZZ_EXAMPLES"),
            database=None,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Case) -> None:
            case.call_and_validate(
                base_url=fuzzed_server.url,
                headers=auth_headers(fuzzed_server),
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    response_schema_conformance,
                    content_type_conformance,
                ],
                timeout=30,
            )

        try:
            check()
        except Exception as e:
            failures[operation.label] = str(e)
    assert not failures, "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
