"""Saved-test validation (service/registry/validation.py): each check and the path it reports."""

from __future__ import annotations

from typing import Any

import pytest

from service.registry.validation import validate


def _assertion(condition: dict[str, Any], handle: str = "output-json-0") -> dict[str, Any]:
    return {"target": {"output_handle_id": handle, "path": "a"}, "condition": condition}


def _found(
    block_type: str | None, config: dict[str, Any] | None, assertion: dict[str, Any]
) -> list[tuple[str, str]]:
    return [(issue.path, issue.code) for issue in validate(block_type, config, assertion)]


FUNCTION = {"entrypoint": "tests.run_functions:invoice"}


@pytest.mark.parametrize(
    "condition",
    [
        {"kind": "exists"},
        {"kind": "equals", "expected": 1},
        {"kind": "matches_regex", "pattern": r"^\d+(?:\.\d+)?$"},
        {"kind": "json_schema_valid", "schema": {"type": "object", "required": ["a"]}},
        {"kind": "between", "lower": 1, "upper": 1},
        {"kind": "length_compare", "op": "gte", "expected": 0},
        {"kind": "all_items_match", "condition": {"kind": "matches_regex", "pattern": "a+"}},
    ],
)
def test_a_sound_test_has_no_issue(condition: dict[str, Any]) -> None:
    """Sound conditions on a known block type report nothing."""
    assert [] == _found("function", FUNCTION, _assertion(condition))


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        (
            {"kind": "matches_regex", "pattern": "("},
            ("$.assertion.condition.pattern", "invalid_regex"),
        ),
        # A group name the run's `regex` engine refuses.
        (
            {"kind": "matches_regex", "pattern": "(?P<1>a)"},
            ("$.assertion.condition.pattern", "invalid_regex"),
        ),
        (
            {"kind": "json_schema_valid", "schema": {"type": "nothing"}},
            ("$.assertion.condition.schema", "schema_invalid"),
        ),
        (
            {"kind": "json_schema_valid", "schema": {"minLength": -1}},
            ("$.assertion.condition.schema", "schema_invalid"),
        ),
        ({"kind": "json_schema_valid"}, ("$.assertion.condition.schema", "schema_invalid")),
        (
            {"kind": "between", "lower": 5, "upper": 1},
            ("$.assertion.condition.lower", "invalid_bounds"),
        ),
        (
            {"kind": "length_compare", "op": "eq", "expected": -1},
            ("$.assertion.condition.expected", "out_of_range"),
        ),
        (
            {
                "kind": "any_item_matches",
                "condition": {
                    "kind": "all_items_match",
                    "condition": {"kind": "matches_regex", "pattern": "["},
                },
            },
            ("$.assertion.condition.condition.condition.pattern", "invalid_regex"),
        ),
    ],
)
def test_each_broken_condition_is_reported_at_its_path(
    condition: dict[str, Any], expected: tuple[str, str]
) -> None:
    """A bad regex, an invalid schema, bounds out of order, a negative length, at any depth."""
    assert [expected] == _found("function", FUNCTION, _assertion(condition))


def test_the_block_must_exist_have_a_known_type_and_a_usable_config() -> None:
    """No block, an unknown type, or a config its executor would refuse: at the target."""
    exists = _assertion({"kind": "exists"})
    assert [("$.target.block_id", "block_not_found")] == _found(None, None, exists)
    assert [("$.target.block_id", "unknown_block_type")] == _found("teleport", {}, exists)
    assert [("$.target.block_id", "invalid_block_config")] == _found("function", {}, exists)
    assert [("$.target.block_id", "invalid_block_config")] * 2 == _found(
        "api_call", {"url": "ftp://x", "method": "BREW"}, exists
    )
    assert [] == _found("api_call", {"url": "https://example.org/a", "method": "get"}, exists)
    # Blocks run by the operator's runtime: their config is theirs to judge.
    assert [] == _found("extract", {"anything": True}, exists)


def test_the_output_handle_must_exist_where_the_outputs_are_known() -> None:
    """An api_call block has one output, `output-json-0`; a function's outputs are unknown."""
    config = {"url": "https://example.org/a"}
    assert [("$.assertion.target.output_handle_id", "unknown_output_handle")] == _found(
        "api_call", config, _assertion({"kind": "exists"}, handle="output-json-9")
    )
    assert [] == _found("function", FUNCTION, _assertion({"kind": "exists"}, handle="anything"))


def test_every_issue_is_reported_not_only_the_first() -> None:
    """Several problems at once: each one, in order, with its own path."""
    assertion = _assertion({"kind": "matches_regex", "pattern": "("}, handle="nope")
    assert [
        ("$.target.block_id", "invalid_block_config"),
        ("$.assertion.target.output_handle_id", "unknown_output_handle"),
        ("$.assertion.condition.pattern", "invalid_regex"),
    ] == _found("api_call", {"url": "nope"}, assertion)
