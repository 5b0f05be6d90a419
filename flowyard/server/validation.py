"""A request FastAPI refuses against its model, told in Flowyard's error shape: each problem's
field, the rule it broke, and how to fix it, instead of ``{"detail": [...]}`` that a client can
only report as "answered 422"."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowyard import defaults
from flowyard.schemas import NAME_PATTERN

# More than a few problems at once is a client sending the wrong thing, not a typo.
MAX_PROBLEMS = 3
_WHERE = {"body", "query", "path", "header", "cookie"}


def _fix(error: dict[str, Any]) -> str:
    kind, ctx = str(error.get("type", "")), error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return (
            "use 1 to 63 lowercase letters, digits and dashes, starting and ending with a letter "
            "or digit"
        )
    if kind == "missing":
        return "add it"
    if kind == "extra_forbidden":
        return "remove it"
    if kind.startswith(("greater_than", "less_than")):
        return "send a number in that range"
    if kind.startswith("string_too_long"):
        return "shorten it"
    return f"see the API's schema at {defaults.API_PREFIX}/docs"


def _field(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in _WHERE:
        kind, parts = parts[0], parts[1:]
        if kind != "body" and parts:
            return f"{'.'.join(parts)} (in the {kind})"
    return ".".join(parts) or "the body"


def describe(errors: Sequence[Any]) -> str:
    """One message for pydantic's validation errors: ``field: rule; fix`` for each."""
    problems = [
        f"{_field(e.get('loc', ()))}: {e.get('msg', 'is not valid')}; {_fix(e)}"
        for e in errors[:MAX_PROBLEMS]
    ]
    more = len(errors) - MAX_PROBLEMS
    if more > 0:
        problems.append(f"And {more} more problem{'s' if more > 1 else ''}")
    return ". ".join(problems) + "." if problems else "The request does not fit the API's schema."
