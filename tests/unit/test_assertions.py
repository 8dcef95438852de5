"""The assertion engine, condition by condition: no database, no network."""

from __future__ import annotations

import time
from typing import Any

import pytest

from events.types import AssertionResult
from service.execution import assertions
from service.execution.assertions import AssertionServices, evaluate

NO_SERVICES = AssertionServices(judge_url=None, embeddings_url=None, session=None)
HANDLE = "out"


async def check(
    condition: dict[str, Any],
    value: Any,
    path: str | None = None,
) -> AssertionResult:
    """Evaluate `condition` on `value` as the output handle `out`, at `path`."""
    target: dict[str, Any] = {"output_handle_id": HANDLE}
    if path is not None:
        target["path"] = path
    spec = {"id": "a-1", "target": target, "condition": condition, "label": "the check"}
    return await evaluate(spec, {HANDLE: value}, NO_SERVICES)


def code_of(result: AssertionResult) -> str | None:
    """The failure code of a result, or None when it passed."""
    return None if result.failure is None else result.failure.code


async def outcome_and_code(condition: dict[str, Any], value: Any) -> tuple[str, str | None]:
    """The outcome and failure code of `condition` on the whole `value`."""
    result = await check(condition, value)
    return result.outcome, code_of(result)


# The result itself ------------------------------------------------------------


async def test_a_passed_result_carries_the_spec_and_no_failure() -> None:
    """A passing result names the assertion, its kind, label, actual and expected values."""
    result = await check(
        {"kind": "equals", "expected": "ACME"}, {"vendor": {"name": "ACME"}}, "vendor.name"
    )

    assert "a-1" == result.assertion_id
    assert "equals" == result.condition_kind
    assert "passed" == result.outcome
    assert "ACME" == result.actual_value
    assert "ACME" == result.expected_value
    assert "the check" == result.assertion_label
    assert None is result.failure
    assert (None, None, None) == (result.score, result.threshold, result.metric_kind)


async def test_a_failed_result_has_code_assertion_failed_and_says_what_differed() -> None:
    """A failed equals carries `assertion_failed` and a message with both values and the path."""
    result = await check({"kind": "equals", "expected": {"total": 42}}, {"total": 41})

    assert "failed" == result.outcome
    assert "assertion_failed" == code_of(result)
    assert result.failure is not None
    assert "'total'" in result.failure.message
    assert "42" in result.failure.message
    assert "41" in result.failure.message


async def test_an_assertion_without_id_or_label_gets_an_empty_id_and_no_label() -> None:
    """The id defaults to "" and the label to None."""
    spec = {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}}

    result = await evaluate(spec, {"o": 1}, NO_SERVICES)

    assert ("", None, "passed") == (result.assertion_id, result.assertion_label, result.outcome)


async def test_an_assertion_that_does_not_decode_is_blocked() -> None:
    """A stored assertion of an unknown kind is blocked with invalid_assertion, not raised."""
    spec = {"id": "x", "target": {"output_handle_id": "o"}, "condition": {"kind": "nope"}}

    result = await evaluate(spec, {"o": 1}, NO_SERVICES)

    assert ("blocked", "invalid_assertion") == (result.outcome, code_of(result))
    assert ("x", "nope") == (result.assertion_id, result.condition_kind)


# Handles --------------------------------------------------------------------


async def test_a_missing_handle_is_blocked_and_the_message_lists_the_present_handles() -> None:
    """An assertion on a handle the block did not produce is blocked with missing_handle."""
    spec = {"target": {"output_handle_id": "total"}, "condition": {"kind": "exists"}}

    result = await evaluate(spec, {"text": "x", "amount": 3}, NO_SERVICES)

    assert ("blocked", "missing_handle") == (result.outcome, code_of(result))
    assert result.failure is not None
    assert "'total'" in result.failure.message
    assert "'amount', 'text'" in result.failure.message
    assert ["amount", "text"] == result.failure.details["present"]


@pytest.mark.parametrize("kind", ["exists", "not_exists", "equals"])
async def test_no_outputs_at_all_is_a_missing_handle(kind: str) -> None:
    """Outputs of None block every kind, even exists and not_exists."""
    condition: dict[str, Any] = {"kind": kind}
    if kind == "equals":
        condition["expected"] = 1
    spec = {"target": {"output_handle_id": "total"}, "condition": condition}

    result = await evaluate(spec, None, NO_SERVICES)

    assert ("blocked", "missing_handle") == (result.outcome, code_of(result))
    assert None is result.actual_value


# Paths ----------------------------------------------------------------------

DOC = {
    "vendor": {"name": "ACME", "vat": None},
    "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": None}],
    "total": 42,
    "note": "paid",
    "7": "a digit key",
}

PATHS = [
    # path, exists, not_exists, equals-outcome (expected "ACME"), code of the equals
    ("vendor.name", "passed", "failed", "passed", None),
    ("vendor.vat", "passed", "failed", "failed", "assertion_failed"),  # a present null
    ("vendor.vat.rate", "failed", "passed", "blocked", "path_not_found"),  # through null
    ("vendor.missing", "failed", "passed", "blocked", "path_not_found"),
    ("missing.deeper", "failed", "passed", "blocked", "path_not_found"),
    ("items.0.sku", "passed", "failed", "failed", "assertion_failed"),
    ("items.1.qty.unit", "failed", "passed", "blocked", "path_not_found"),  # through null
    ("items.2.sku", "failed", "passed", "blocked", "path_not_found"),  # out of range
    ("items.first", "failed", "passed", "blocked", "type_error"),  # non-index on a list
    ("items.-1", "failed", "passed", "blocked", "type_error"),
    ("total.value", "failed", "passed", "blocked", "type_error"),  # into a number
    ("note.0", "failed", "passed", "blocked", "type_error"),  # into a string
    ("7", "passed", "failed", "failed", "assertion_failed"),  # digits on an object: a key
]


@pytest.mark.parametrize(("path", "exists", "not_exists", "equals", "code"), PATHS)
async def test_path_resolution_by_kind(
    path: str, exists: str, not_exists: str, equals: str, code: str | None
) -> None:
    """Absent and wrong-type paths fail exists and pass not_exists; other kinds are blocked."""
    assert exists == (await check({"kind": "exists"}, DOC, path)).outcome
    assert not_exists == (await check({"kind": "not_exists"}, DOC, path)).outcome
    result = await check({"kind": "equals", "expected": "ACME"}, DOC, path)
    assert (equals, code) == (result.outcome, code_of(result))


PARTIALS = [
    # path, partial_path, partial_value
    ("vendor.vat.rate", "vendor.vat", None),
    ("vendor.missing", "vendor", DOC["vendor"]),
    ("missing.deeper", "", DOC),
    ("items.2.sku", "items", DOC["items"]),
    ("items.first", "items", DOC["items"]),
    ("items.0.sku.x", "items.0.sku", "A-1"),
    ("total.value", "total", 42),
]


@pytest.mark.parametrize(("path", "partial_path", "partial_value"), PARTIALS)
async def test_an_unresolved_path_reports_the_deepest_part_that_resolved(
    path: str, partial_path: str, partial_value: Any
) -> None:
    """Blocked path failures carry partial_path and partial_value and name the path."""
    result = await check({"kind": "equals", "expected": 1}, DOC, path)

    assert result.failure is not None
    assert partial_path == result.failure.details["partial_path"]
    assert partial_value == result.failure.details["partial_value"]
    assert path in result.failure.message
    assert None is result.actual_value


@pytest.mark.parametrize("path", [None, ""])
async def test_an_empty_path_is_the_whole_value(path: str | None) -> None:
    """No path, or an empty one, compares the whole handle value."""
    result = await check({"kind": "equals", "expected": DOC}, DOC, path)

    assert "passed" == result.outcome


async def test_exists_passes_on_a_present_null_at_the_root() -> None:
    """A handle whose value is null exists."""
    assert "passed" == (await check({"kind": "exists"}, None)).outcome
    assert "failed" == (await check({"kind": "not_exists"}, None)).outcome


# Equality -------------------------------------------------------------------

EQUALITY = [
    # actual, expected, deep-equal?
    (True, 1, False),
    (False, 0, False),
    (1, True, False),
    (0, False, False),
    (True, True, True),
    (1, 1.0, True),
    (0, -0.0, True),
    (1, 1.5, False),
    ("1", 1, False),
    (None, None, True),
    (None, 0, False),
    ("", None, False),
    ([], {}, False),
    ({"a": [1, {"b": True}]}, {"a": [1, {"b": 1}]}, False),  # nested bool vs int
    ({"a": [1, {"b": 0}]}, {"a": [1.0, {"b": 0.0}]}, True),
    ([1, 2], [2, 1], False),
    ([1, 2], [1, 2, 3], False),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
    ({"a": 1, "reasoning___a": "because"}, {"a": 1}, True),
    ({"a": 1}, {"a": 1, "reasoning___a": "other"}, True),
    ({"x": [{"reasoning___why": 1, "v": 2}]}, {"x": [{"v": 2, "reasoning___how": 3}]}, True),
    ({"reasoning_a": 1}, {}, False),  # only the exact prefix is ignored
]


@pytest.mark.parametrize(("actual", "expected", "equal"), EQUALITY)
async def test_equals_and_not_equals_are_strict_and_deep(
    actual: Any, expected: Any, equal: bool
) -> None:
    """equals passes exactly when the values are strictly equal; not_equals is its negation."""
    equals = await check({"kind": "equals", "expected": expected}, actual)
    not_equals = await check({"kind": "not_equals", "expected": expected}, actual)

    assert ("passed" if equal else "failed") == equals.outcome
    assert ("failed" if equal else "passed") == not_equals.outcome
    assert expected == equals.expected_value


async def test_equals_names_the_first_difference_in_its_details() -> None:
    """The failure details point at the nested key that differs."""
    result = await check(
        {"kind": "equals", "expected": {"a": [1, {"b": 1}]}}, {"a": [1, {"b": True}]}
    )

    assert result.failure is not None
    assert "a.1.b" == result.failure.details["path"]


# Contains -------------------------------------------------------------------

CONTAINS = [
    # actual, expected, contains-outcome, not_contains-outcome, code
    ("hello world", "lo w", "passed", "failed", None),
    ("hello world", "bye", "failed", "passed", None),
    ("hello", "", "passed", "failed", None),
    ([1, "a", {"k": True}], {"k": True}, "passed", "failed", None),
    ([1, "a", {"k": True}], {"k": 1}, "failed", "passed", None),
    ([True], 1, "failed", "passed", None),
    ([1.0], 1, "passed", "failed", None),
    ([{"v": 1, "reasoning___x": "r"}], {"v": 1}, "passed", "failed", None),
    ([], 1, "failed", "passed", None),
    ("hello 1", 1, "blocked", "blocked", "type_error"),  # a non-string in a string
    ({"a": 1}, "a", "blocked", "blocked", "type_error"),
    (42, 4, "blocked", "blocked", "type_error"),
    (None, "x", "blocked", "blocked", "type_error"),
]


@pytest.mark.parametrize(("actual", "expected", "contains", "not_contains", "code"), CONTAINS)
async def test_contains_and_not_contains(
    actual: Any, expected: Any, contains: str, not_contains: str, code: str | None
) -> None:
    """Substring of a string, deep-equal element of a list; other types are blocked."""
    result = await check({"kind": "contains", "expected": expected}, actual)
    negated = await check({"kind": "not_contains", "expected": expected}, actual)

    assert contains == result.outcome
    assert not_contains == negated.outcome
    if code is not None:
        assert (code, code) == (code_of(result), code_of(negated))


# Affixes and regular expressions ---------------------------------------------

AFFIXES = [
    # kind, actual, expected, outcome, code
    ("starts_with", "invoice-42", "invoice", "passed", None),
    ("starts_with", "invoice-42", "42", "failed", "assertion_failed"),
    ("starts_with", "abc", "", "passed", None),
    ("starts_with", 42, "4", "blocked", "type_error"),
    ("starts_with", ["a"], "a", "blocked", "type_error"),
    ("ends_with", "invoice-42", "-42", "passed", None),
    ("ends_with", "invoice-42", "invoice", "failed", "assertion_failed"),
    ("ends_with", None, "x", "blocked", "type_error"),
]


@pytest.mark.parametrize(("kind", "actual", "expected", "outcome", "code"), AFFIXES)
async def test_starts_with_and_ends_with(
    kind: str, actual: Any, expected: str, outcome: str, code: str | None
) -> None:
    """Prefix and suffix tests of strings; a non-string actual is a type error."""
    assert (outcome, code) == await outcome_and_code({"kind": kind, "expected": expected}, actual)


REGEXES = [
    # pattern, actual, outcome, code
    (r"INV-\d+", "INV-0042", "passed", None),
    (r"INV-\d+", "INV-0042 paid", "failed", "assertion_failed"),  # a full match, not a search
    (r"\d+", "x12", "failed", "assertion_failed"),
    (r"(?i)acme", "ACME", "passed", None),
    (r"a|b", "b", "passed", None),  # fullmatch applies to the whole alternation
    (r"", "", "passed", None),
    (r"(", "x", "blocked", "invalid_regex"),
    (r"[z-a]", "x", "blocked", "invalid_regex"),
    (r"\d+", 12, "blocked", "type_error"),
    (r"\d+", None, "blocked", "type_error"),
]


@pytest.mark.parametrize(("pattern", "actual", "outcome", "code"), REGEXES)
async def test_matches_regex(pattern: str, actual: Any, outcome: str, code: str | None) -> None:
    """A full match of a string; a pattern that does not compile is blocked."""
    result = await check({"kind": "matches_regex", "pattern": pattern}, actual)

    assert (outcome, code) == (result.outcome, code_of(result))
    assert pattern == result.expected_value


# `(a+)+$` is optimised by the `regex` module; this alternation still backtracks
# exponentially on a run of "a" that cannot end the match.
CATASTROPHIC = r"(a|aa)+"


async def test_a_catastrophic_regex_is_blocked_by_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pattern with exponential backtracking is blocked with regex_timeout, quickly."""
    monkeypatch.setattr(assertions, "REGEX_TIMEOUT_S", 0.05)
    started = time.monotonic()

    result = await check({"kind": "matches_regex", "pattern": CATASTROPHIC}, "a" * 40 + "!")

    assert ("blocked", "regex_timeout") == (result.outcome, code_of(result))
    assert time.monotonic() - started < 2


async def test_a_catastrophic_pattern_inside_a_schema_is_blocked_by_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The schema `pattern` keyword uses the same timeout as matches_regex."""
    monkeypatch.setattr(assertions, "REGEX_TIMEOUT_S", 0.05)
    schema = {"type": "string", "pattern": f"^{CATASTROPHIC}$"}
    started = time.monotonic()

    result = await check({"kind": "json_schema_valid", "schema": schema}, "a" * 40 + "!")

    assert ("blocked", "regex_timeout") == (result.outcome, code_of(result))
    assert time.monotonic() - started < 2


# Numbers, lengths and bounds -------------------------------------------------

NUMBERS = [
    # op, actual, expected, outcome
    ("gt", 5, 4, "passed"),
    ("gt", 4, 4, "failed"),
    ("gte", 4, 4, "passed"),
    ("gte", 3.9, 4, "failed"),
    ("lt", 3, 4, "passed"),
    ("lt", 4, 4, "failed"),
    ("lte", 4.0, 4, "passed"),
    ("lte", 4.5, 4, "failed"),
    ("eq", 4, 4.0, "passed"),
    ("eq", 4, 5, "failed"),
    ("neq", 4, 5, "passed"),
    ("neq", 4, 4, "failed"),
    ("gt", -1.5, -2, "passed"),
]


@pytest.mark.parametrize(("op", "actual", "expected", "outcome"), NUMBERS)
async def test_number_compare_every_op(
    op: str, actual: float, expected: float, outcome: str
) -> None:
    """Each comparison operator, on both sides of its boundary."""
    result = await check({"kind": "number_compare", "op": op, "expected": expected}, actual)

    assert outcome == result.outcome
    assert expected == result.expected_value


@pytest.mark.parametrize("actual", [True, False, "5", None, [5], {"n": 5}])
async def test_number_compare_on_a_non_number_is_a_type_error(actual: Any) -> None:
    """Booleans, strings, null, arrays and objects are not numbers."""
    condition = {"kind": "number_compare", "op": "gte", "expected": 0}

    assert ("blocked", "type_error") == await outcome_and_code(condition, actual)


LENGTHS = [
    # actual, op, expected, outcome, code
    ("abc", "eq", 3, "passed", None),
    ("", "eq", 0, "passed", None),
    ("héllo", "eq", 5, "passed", None),  # characters, not bytes
    ([1, 2], "gt", 1, "passed", None),
    ([1, 2], "lt", 2, "failed", "assertion_failed"),
    ({"a": 1, "b": 2, "c": 3}, "gte", 3, "passed", None),
    ({}, "neq", 0, "failed", "assertion_failed"),
    (12345, "eq", 5, "blocked", "type_error"),
    (None, "eq", 0, "blocked", "type_error"),
    (True, "eq", 1, "blocked", "type_error"),
]


@pytest.mark.parametrize(("actual", "op", "expected", "outcome", "code"), LENGTHS)
async def test_length_compare(
    actual: Any, op: str, expected: int, outcome: str, code: str | None
) -> None:
    """The length of a string, array or object; anything else is a type error."""
    condition = {"kind": "length_compare", "op": op, "expected": expected}

    assert (outcome, code) == await outcome_and_code(condition, actual)


BETWEEN = [
    # actual, inclusive, outcome, code  (bounds are 1 and 10)
    (1, True, "passed", None),
    (10, True, "passed", None),
    (5.5, True, "passed", None),
    (0.999, True, "failed", "assertion_failed"),
    (10.001, True, "failed", "assertion_failed"),
    (1, False, "failed", "assertion_failed"),
    (10, False, "failed", "assertion_failed"),
    (1.001, False, "passed", None),
    (9.999, False, "passed", None),
    (True, True, "blocked", "type_error"),
    ("5", True, "blocked", "type_error"),
    (None, True, "blocked", "type_error"),
]


@pytest.mark.parametrize(("actual", "inclusive", "outcome", "code"), BETWEEN)
async def test_between_edges(actual: Any, inclusive: bool, outcome: str, code: str | None) -> None:
    """Bounds count when inclusive and do not when exclusive; non-numbers are type errors."""
    condition = {"kind": "between", "lower": 1, "upper": 10, "inclusive": inclusive}
    result = await check(condition, actual)

    assert (outcome, code) == (result.outcome, code_of(result))
    assert {"lower": 1, "upper": 10, "inclusive": inclusive} == result.expected_value


async def test_between_is_inclusive_by_default() -> None:
    """Without `inclusive`, a value on a bound passes."""
    assert "passed" == (await check({"kind": "between", "lower": 1, "upper": 10}, 10)).outcome


# Object and array containment ------------------------------------------------

INVOICE = {
    "vendor": {"name": "ACME", "address": {"city": "Paris", "zip": "75001"}},
    "lines": [1, 2],
    "paid": True,
    "reasoning___vendor": "read from the header",
}

OBJECT_CONTAINS = [
    # expected, outcome, code
    ({}, "passed", None),
    ({"paid": True}, "passed", None),
    ({"paid": 1}, "failed", "assertion_failed"),
    ({"vendor": {"name": "ACME"}}, "passed", None),
    ({"vendor": {"address": {"city": "Paris"}}}, "passed", None),  # deep subset
    ({"vendor": {"address": {"city": "Lyon"}}}, "failed", "assertion_failed"),
    ({"vendor": {"address": {"country": "FR"}}}, "failed", "assertion_failed"),
    ({"lines": [1, 2]}, "passed", None),
    ({"lines": [1]}, "failed", "assertion_failed"),  # arrays compare by equality
    ({"missing": None}, "failed", "assertion_failed"),
    ({"vendor": "ACME"}, "failed", "assertion_failed"),
    ({"reasoning___other": "x", "paid": True}, "passed", None),
]


@pytest.mark.parametrize(("expected", "outcome", "code"), OBJECT_CONTAINS)
async def test_object_contains(expected: dict[str, Any], outcome: str, code: str | None) -> None:
    """Every expected key is present, nested objects as subsets, other values equal."""
    result = await check({"kind": "object_contains", "expected": expected}, INVOICE)

    assert (outcome, code) == (result.outcome, code_of(result))


@pytest.mark.parametrize("actual", [[{"a": 1}], "a", None, 3])
async def test_object_contains_on_a_non_object_is_a_type_error(actual: Any) -> None:
    """Only an object can contain an object."""
    condition = {"kind": "object_contains", "expected": {"a": 1}}

    assert ("blocked", "type_error") == await outcome_and_code(condition, actual)


ARRAY_CONTAINS = [
    # actual, expected, outcome, code
    ([{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}], {"sku": "B"}, "passed", None),
    (
        [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}],
        {"sku": "B", "qty": 1},
        "failed",
        "assertion_failed",
    ),
    ([{"sku": "A", "meta": {"x": 1, "y": 2}}], {"meta": {"y": 2}}, "passed", None),
    ([{"flag": True}], {"flag": 1}, "failed", "assertion_failed"),
    (["sku", 1, None, [{"sku": "B"}]], {"sku": "B"}, "failed", "assertion_failed"),
    ([], {}, "failed", "assertion_failed"),
    ([{}], {}, "passed", None),
    ({"sku": "B"}, {"sku": "B"}, "blocked", "type_error"),
    ("sku", {"sku": "B"}, "blocked", "type_error"),
]


@pytest.mark.parametrize(("actual", "expected", "outcome", "code"), ARRAY_CONTAINS)
async def test_array_contains(
    actual: Any, expected: dict[str, Any], outcome: str, code: str | None
) -> None:
    """Some element is an object that contains the expected object."""
    condition = {"kind": "array_contains", "expected": expected}

    assert (outcome, code) == await outcome_and_code(condition, actual)


# JSON Schema ------------------------------------------------------------------

PERSON = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
}

SCHEMAS = [
    # schema, actual, outcome, code
    (PERSON, {"name": "Ada", "age": 36}, "passed", None),
    (PERSON, {"name": "Ada", "age": -1}, "failed", "assertion_failed"),
    (PERSON, {"age": 3}, "failed", "assertion_failed"),
    (PERSON, "Ada", "failed", "assertion_failed"),
    ({"type": "string", "pattern": "^INV-"}, "INV-1", "passed", None),
    ({"type": "string", "pattern": "^INV-"}, "X-1", "failed", "assertion_failed"),
    ({"prefixItems": [{"type": "integer"}], "items": False}, [1], "passed", None),  # 2020-12
    ({"prefixItems": [{"type": "integer"}], "items": False}, [1, 2], "failed", "assertion_failed"),
    ({}, None, "passed", None),
    (None, 1, "blocked", "schema_invalid"),
    ({"type": "nope"}, 1, "blocked", "schema_invalid"),
    ({"minimum": "zero"}, 1, "blocked", "schema_invalid"),
    ({"$ref": "https://example.invalid/schema.json"}, 1, "blocked", "schema_invalid"),
    ({"$ref": "#/$defs/missing"}, 1, "blocked", "schema_invalid"),
    ({"$schema": ["draft"]}, 1, "blocked", "schema_invalid"),
    ({"$schema": 5}, 1, "blocked", "schema_invalid"),
    (
        {"$schema": "http://json-schema.org/draft-04/schema#", "maximum": 1},
        2,
        "failed",
        "assertion_failed",
    ),
]


@pytest.mark.parametrize(("schema", "actual", "outcome", "code"), SCHEMAS)
async def test_json_schema_valid(
    schema: dict[str, Any] | None, actual: Any, outcome: str, code: str | None
) -> None:
    """Draft 2020-12 validation; a missing or invalid schema is blocked."""
    result = await check({"kind": "json_schema_valid", "schema": schema}, actual)

    assert (outcome, code) == (result.outcome, code_of(result))
    assert schema == result.expected_value


async def test_a_schema_failure_names_the_first_error_and_its_path() -> None:
    """The message carries the validation error's message and JSON path."""
    result = await check(
        {"kind": "json_schema_valid", "schema": PERSON}, {"name": "Ada", "age": -1}
    )

    assert result.failure is not None
    assert "-1 is less than the minimum of 0 (at $.age)" == result.failure.message
    assert "$.age" == result.failure.details["path"]
    expected_errors = [{"path": "$.age", "message": "-1 is less than the minimum of 0"}]
    assert expected_errors == result.failure.details["errors"]


# Items ------------------------------------------------------------------------

POSITIVE = {"kind": "number_compare", "op": "gt", "expected": 0}

ITEMS = [
    # kind, nested condition, actual, outcome, code
    ("all_items_match", POSITIVE, [], "passed", None),
    ("any_item_matches", POSITIVE, [], "failed", "assertion_failed"),
    ("all_items_match", POSITIVE, [1, 2, 3], "passed", None),
    ("all_items_match", POSITIVE, [1, -2, 3], "failed", "assertion_failed"),
    ("any_item_matches", POSITIVE, [-1, -2, 3], "passed", None),
    ("any_item_matches", POSITIVE, [-1, -2], "failed", "assertion_failed"),
    ("all_items_match", POSITIVE, [1, "2"], "blocked", "type_error"),
    ("any_item_matches", POSITIVE, [1, True], "blocked", "type_error"),  # blocked wins over a pass
    ("all_items_match", POSITIVE, [-1, None], "blocked", "type_error"),  # and over a failure
    (
        "all_items_match",
        {"kind": "exists"},
        [None, 1],
        "passed",
        None,
    ),  # no path: items are present
    (
        "all_items_match",
        {"kind": "matches_regex", "pattern": "("},
        ["a"],
        "blocked",
        "invalid_regex",
    ),
    ("all_items_match", {"kind": "matches_regex", "pattern": "("}, [], "passed", None),
    (
        "all_items_match",
        {"kind": "object_contains", "expected": {"ok": True}},
        [{"ok": True, "n": 1}],
        "passed",
        None,
    ),
    (
        "any_item_matches",
        {"kind": "all_items_match", "condition": POSITIVE},
        [[-1], [1, 2]],
        "passed",
        None,
    ),
    (
        "all_items_match",
        {"kind": "any_item_matches", "condition": POSITIVE},
        [[-1], [1, 2]],
        "failed",
        "assertion_failed",
    ),
    (
        "all_items_match",
        {"kind": "all_items_match", "condition": POSITIVE},
        [[], [1, "x"]],
        "blocked",
        "type_error",
    ),
    ("all_items_match", POSITIVE, {"a": 1}, "blocked", "type_error"),
    ("any_item_matches", POSITIVE, "123", "blocked", "type_error"),
]


@pytest.mark.parametrize(("kind", "nested", "actual", "outcome", "code"), ITEMS)
async def test_all_items_match_and_any_item_matches(
    kind: str, nested: dict[str, Any], actual: Any, outcome: str, code: str | None
) -> None:
    """all: true on [], any: false on []; a blocked item blocks the whole with its code."""
    result = await check({"kind": kind, "condition": nested}, actual)

    assert (outcome, code) == (result.outcome, code_of(result))
    assert nested == result.expected_value


async def test_a_blocked_item_reports_its_index() -> None:
    """The failure of a blocked item carries the index of that item, also through nesting."""
    outer = await check({"kind": "all_items_match", "condition": POSITIVE}, [1, 2, "x"])
    nested = await check(
        {
            "kind": "any_item_matches",
            "condition": {"kind": "all_items_match", "condition": POSITIVE},
        },
        [[1], [2, None]],
    )

    assert outer.failure is not None
    assert 2 == outer.failure.details["index"]
    assert nested.failure is not None
    assert (1, [1, 1]) == (nested.failure.details["index"], nested.failure.details["index_path"])


async def test_a_failed_all_items_match_reports_the_first_failing_item() -> None:
    """The failure names the first item that did not match and lists all of them."""
    result = await check({"kind": "all_items_match", "condition": POSITIVE}, [1, -1, 2, 0])

    assert result.failure is not None
    assert 1 == result.failure.details["index"]
    assert [1, 3] == result.failure.details["failed_indexes"]


# Similarity -------------------------------------------------------------------

SIMILARITY = [
    # actual, reference, threshold, score, outcome
    ("kitten", "sitting", 0.5, 1 - 3 / 7, "passed"),  # distance 3 over length 7
    ("kitten", "sitting", 0.6, 1 - 3 / 7, "failed"),
    ("ACME Corp", "ACME Corp", 1.0, 1.0, "passed"),
    ("abcd", "wxyz", 0.0, 0.0, "passed"),
    ("", "", 1.0, 1.0, "passed"),
    ({"b": 1, "a": 2}, {"a": 2, "b": 1}, 1.0, 1.0, "passed"),  # canonical JSON: keys sorted
    ([1, 2], [1, 3], 0.8, 1 - 1 / 5, "passed"),  # "[1,2]" vs "[1,3]"
    (42, "42", 1.0, 1.0, "passed"),  # a number is compared as its JSON text
    (None, "null", 1.0, 1.0, "passed"),
]


@pytest.mark.parametrize(("actual", "reference", "threshold", "score", "outcome"), SIMILARITY)
async def test_similarity_gte_levenshtein(
    actual: Any, reference: Any, threshold: float, score: float, outcome: str
) -> None:
    """Normalized Levenshtein similarity, with score, threshold and metric in the result."""
    result = await check(
        {"kind": "similarity_gte", "reference": reference, "threshold": threshold}, actual
    )

    assert outcome == result.outcome
    assert score == pytest.approx(result.score)
    assert threshold == result.threshold
    assert "levenshtein" == result.metric_kind
    assert reference == result.expected_value


async def test_a_failed_similarity_says_the_score_and_threshold() -> None:
    """The message of a failed similarity names both numbers."""
    condition = {"kind": "similarity_gte", "reference": "sitting", "threshold": 0.6}

    result = await check(condition, "kitten")

    assert result.failure is not None
    assert "similarity 0.5714 is below the threshold 0.6" == result.failure.message


async def test_similarity_by_embeddings_without_a_service_is_blocked() -> None:
    """Method embeddings without EMBEDDINGS_URL is blocked, and says what to set."""
    condition = {
        "kind": "similarity_gte",
        "reference": "a",
        "threshold": 0.5,
        "method": "embeddings",
    }

    result = await check(condition, "a")

    assert ("blocked", "embeddings_unavailable") == (result.outcome, code_of(result))
    assert result.failure is not None
    assert "EMBEDDINGS_URL" in result.failure.message
    assert (None, 0.5, "embeddings_cosine") == (result.score, result.threshold, result.metric_kind)


# Splits -----------------------------------------------------------------------


def splits(**pages: list[int]) -> dict[str, Any]:
    """A split document: name -> pages."""
    return {"splits": [{"name": name, "pages": numbers} for name, numbers in pages.items()]}


SPLITS = [
    # actual, expected, threshold, score, outcome
    (splits(invoice=[1, 2], receipt=[3]), splits(invoice=[1, 2], receipt=[3]), 1, 1.0, "passed"),
    # invoice 2/3, receipt 1: mean 5/6
    (
        splits(invoice=[1, 2, 3], receipt=[3]),
        splits(invoice=[1, 2], receipt=[3]),
        1,
        5 / 6,
        "failed",
    ),
    (
        splits(invoice=[1, 2, 3], receipt=[3]),
        splits(invoice=[1, 2], receipt=[3]),
        0.8,
        5 / 6,
        "passed",
    ),
    # invoice 1/3 ({2} of {1, 2, 3}), receipt 0 ({4} vs {3})
    (
        splits(invoice=[2], receipt=[4]),
        splits(invoice=[1, 2, 3], receipt=[3]),
        0.1,
        (1 / 3) / 2,
        "passed",
    ),
    # a name only in the actual scores 0: (1 + 0) / 2
    (splits(a=[1], b=[2]), splits(a=[1]), 0.5, 0.5, "passed"),
    # a name only in the expected scores 0 even with no pages: (1 + 0) / 2
    (splits(a=[1]), splits(a=[1], b=[]), 0.6, 0.5, "failed"),
    (splits(a=[]), splits(a=[]), 1, 1.0, "passed"),  # both empty: IoU 1
    (splits(), splits(), 1, 1.0, "passed"),  # no split on either side
    (splits(a=[1, 2])["splits"], splits(a=[2, 1]), 1, 1.0, "passed"),  # a bare list of splits
    (
        {"splits": [{"name": "a", "pages": [1]}, {"name": "a", "pages": [2]}]},
        splits(a=[1, 2]),
        1,
        1.0,
        "passed",
    ),
]


@pytest.mark.parametrize(("actual", "expected", "threshold", "score", "outcome"), SPLITS)
async def test_split_iou_gte(
    actual: Any, expected: dict[str, Any], threshold: float, score: float, outcome: str
) -> None:
    """The mean IoU of page sets over every split name, against the threshold."""
    condition = {"kind": "split_iou_gte", "expected": expected, "threshold": threshold}
    result = await check(condition, actual)

    assert outcome == result.outcome
    assert score == pytest.approx(result.score)
    assert threshold == result.threshold
    assert "split_iou" == result.metric_kind


async def test_split_iou_threshold_defaults_to_one() -> None:
    """Without a threshold, anything short of identical splits fails."""
    condition = {"kind": "split_iou_gte", "expected": splits(a=[1, 2])}

    result = await check(condition, splits(a=[1]))

    assert ("failed", 1.0, 0.5) == (result.outcome, result.threshold, result.score)
    assert result.failure is not None
    assert {"a": 0.5} == result.failure.details["per_split"]


@pytest.mark.parametrize(
    "actual",
    [
        "invoice",
        None,
        {"parts": []},
        {"splits": "a"},
        {"splits": [{"name": "a"}]},
        {"splits": [{"name": 1, "pages": [1]}]},
        {"splits": [{"name": "a", "pages": ["1"]}]},
        {"splits": [{"name": "a", "pages": [True]}]},
        [["a", [1]]],
    ],
)
async def test_split_iou_on_a_malformed_actual_is_a_type_error(actual: Any) -> None:
    """Anything but splits of a name and integer pages is blocked."""
    condition = {"kind": "split_iou_gte", "expected": splits(a=[1])}

    result = await check(condition, actual)

    assert ("blocked", "type_error") == (result.outcome, code_of(result))
    assert None is result.score


async def test_split_iou_with_a_malformed_expected_is_blocked() -> None:
    """An expected value without splits cannot be compared."""
    condition = {"kind": "split_iou_gte", "expected": {"pages": [1]}}

    assert ("blocked", "invalid_condition") == await outcome_and_code(condition, splits(a=[1]))


# Judge --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["llm_judged_as", "llm_not_judged_as"])
async def test_judge_conditions_without_a_judge_are_blocked(kind: str) -> None:
    """Without JUDGE_URL, both judge kinds are blocked and the message says what to set."""
    result = await check({"kind": kind, "rubric": "Is it polite?"}, "Thanks!")

    assert ("blocked", "judge_unavailable") == (result.outcome, code_of(result))
    assert result.failure is not None
    assert "JUDGE_URL" in result.failure.message
    assert "yes" == result.expected_value


# Pure helpers -------------------------------------------------------------------

RESOLVE = [
    ({"a": [10, {"b": None}]}, "a.1.b", assertions.Found(None)),
    ({"a": [10]}, "a.0", assertions.Found(10)),
    ({"a": {"0": "key"}}, "a.0", assertions.Found("key")),
]


@pytest.mark.parametrize(("value", "path", "found"), RESOLVE)
def test_resolve_path_walks_objects_and_arrays(
    value: Any, path: str, found: assertions.Found
) -> None:
    """Digit segments index arrays and are keys on objects."""
    assert found == assertions.resolve_path(value, path)


async def test_a_value_nested_past_the_recursion_limit_is_blocked() -> None:
    """Comparing values nested deeper than Python can recurse is blocked, not raised."""
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]

    result = await check({"kind": "equals", "expected": deep}, deep)

    assert ("blocked", "value_too_deep") == (result.outcome, code_of(result))
