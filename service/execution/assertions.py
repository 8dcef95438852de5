"""The assertion engine: evaluate a saved test's condition against a block's outputs.

`evaluate` takes the stored JSON of an `AssertionSpec`, the block's outputs
(handle id -> plain JSON value) and the external services, and answers an
`AssertionResult` whose outcome is `passed`, `failed` or `blocked`. `blocked`
means the assertion could not be evaluated (a missing handle, a path into a
wrong type, a bad regex or schema, no judge): problems with values never raise.

Failure codes: `assertion_failed` (the only code of a `failed` outcome), and for
`blocked`: `missing_handle`, `path_not_found`, `type_error`, `invalid_regex`,
`regex_timeout`, `schema_invalid`, `judge_unavailable`, `embeddings_unavailable`,
`invalid_condition`, `invalid_assertion`, `value_too_deep`.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, assert_never

import aiohttp
import msgspec
import regex
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import extend, validator_for
from rapidfuzz.distance import Levenshtein
from referencing.exceptions import Unresolvable

from events.types import AssertionFailure, AssertionResult
from service.models import (
    AllItemsMatchCondition,
    AnyItemMatchesCondition,
    ArrayContainsCondition,
    AssertionSpec,
    BetweenCondition,
    Condition,
    ContainsCondition,
    EndsWithCondition,
    EqualsCondition,
    ExistsCondition,
    JsonSchemaValidCondition,
    LengthCompareCondition,
    LlmJudgedAsCondition,
    LlmNotJudgedAsCondition,
    MatchesRegexCondition,
    NotContainsCondition,
    NotEqualsCondition,
    NotExistsCondition,
    NumberCompareCondition,
    ObjectContainsCondition,
    SimilarityGteCondition,
    SplitIouGteCondition,
    StartsWithCondition,
)

REGEX_TIMEOUT_S: float = 1.0
"""How long one regular-expression match may run before the assertion is `regex_timeout`.

Read at each match, so tests can monkeypatch it.
"""

REASONING_PREFIX = "reasoning___"
"""Keys with this prefix hold a model's reasoning: equality ignores them on both sides."""

DEFAULT_JUDGE_LABEL = "yes"

_MAX_SCHEMA_ERRORS = 10
_SHOW_LIMIT = 200

Outcome = Literal["passed", "failed", "blocked"]
_T = TypeVar("_T")


@dataclass(frozen=True)
class AssertionServices:
    """The external services some conditions need, and how long to wait for them.

    `judge_url` answers `llm_judged_as`/`llm_not_judged_as`; `embeddings_url`
    answers `similarity_gte` with method `embeddings`. Without a `session`, a
    short-lived one is opened per request.

    Both URLs are the operator's (JUDGE_URL, EMBEDDINGS_URL), never a tenant's,
    and are often a sidecar on a private address: unlike `api_call` targets they
    are not limited by ALLOWED_OUTBOUND_HOSTS. Redirects are not followed.
    """

    judge_url: str | None = None
    embeddings_url: str | None = None
    session: aiohttp.ClientSession | None = None
    timeout_s: float = 30


# Verdicts -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Verdict:
    """The outcome of a condition on one value, before it becomes a result."""

    outcome: Outcome
    failure: AssertionFailure | None = None
    score: float | None = None


_PASSED = _Verdict("passed")


def _failed(message: str, score: float | None = None, **details: Any) -> _Verdict:
    return _Verdict(
        "failed", AssertionFailure(code="assertion_failed", message=message, details=details), score
    )


def _blocked(code: str, message: str, **details: Any) -> _Verdict:
    return _Verdict("blocked", AssertionFailure(code=code, message=message, details=details))


def _holds(ok: bool, message: str, score: float | None = None, **details: Any) -> _Verdict:
    """Passed when `ok`, else failed with `message` (built eagerly: it is short)."""
    return _Verdict("passed", score=score) if ok else _failed(message, score, **details)


def _type_error(what: str, actual: Any) -> _Verdict:
    kind = json_type(actual)
    return _blocked("type_error", f"{what}, got {kind}", actual_type=kind)


# Values ---------------------------------------------------------------------


def json_type(value: Any) -> str:
    """The JSON type name of a plain value: null, boolean, number, string, array or object."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _is_number(value: Any) -> bool:
    # bool is an int subclass in Python, but never a number in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A short JSON rendering of a value for messages."""
    try:
        text = msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= _SHOW_LIMIT else text[:_SHOW_LIMIT] + "..."


def _join(prefix: str, segment: object) -> str:
    return f"{prefix}.{segment}" if prefix else str(segment)


def _where(path: str) -> str:
    return f"'{path}'" if path else "the root"


def _canonical_text(value: Any) -> str:
    """Strings as they are; any other value as its canonical (key-sorted) JSON text."""
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value, order="sorted").decode()


# Paths ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Found:
    """The path resolved to `value` (which may be a present null)."""

    value: Any


@dataclass(frozen=True, slots=True)
class Unresolved:
    """The path did not resolve.

    `reason` is `absent` (a missing key, an index out of range, a walk through
    null) or `wrong_type` (a walk into a string, number or boolean, or a
    non-index segment on a list). `partial_path` is the deepest prefix that
    resolved ("" for the root) and `partial_value` the value there.
    """

    reason: Literal["absent", "wrong_type"]
    partial_path: str
    partial_value: Any
    explanation: str


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def resolve_path(value: Any, path: str | None) -> Found | Unresolved:
    """Walk a dotted path (`vendor.name`, `items.0.sku`) into a plain JSON value.

    An all-digit segment indexes a list (on an object it is an ordinary key).
    An empty or missing path is the whole value.
    """
    if not path:
        return Found(value)
    current = value
    walked = ""
    for segment in path.split("."):
        if current is None:
            return Unresolved("absent", walked, None, f"{_where(walked)} is null")
        if isinstance(current, dict):
            if segment not in current:
                return Unresolved(
                    "absent", walked, current, f"no key '{segment}' at {_where(walked)}"
                )
            current = current[segment]
        elif isinstance(current, list):
            if not _is_index(segment):
                explanation = f"'{segment}' is not an index, and {_where(walked)} is an array"
                return Unresolved("wrong_type", walked, current, explanation)
            index = int(segment)
            if index >= len(current):
                explanation = (
                    f"index {index} is out of range at {_where(walked)} (length {len(current)})"
                )
                return Unresolved("absent", walked, current, explanation)
            current = current[index]
        else:
            explanation = (
                f"cannot read '{segment}' from the {json_type(current)} at {_where(walked)}"
            )
            return Unresolved("wrong_type", walked, current, explanation)
        walked = _join(walked, segment)
    return Found(current)


# Equality -------------------------------------------------------------------

_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class _Difference:
    """Where two values first differ; formatted only when a message needs it."""

    path: str
    expected: Any
    actual: Any

    def describe(self) -> str:
        where = f"at {_where(self.path)}"
        if self.actual is _MISSING:
            return f"{where}: expected {_show(self.expected)}, the key is missing"
        if self.expected is _MISSING:
            return f"{where}: unexpected key with {_show(self.actual)}"
        if isinstance(self.actual, list) and isinstance(self.expected, list):
            return f"{where}: expected {len(self.expected)} items, got {len(self.actual)}"
        return f"{where}: expected {_show(self.expected)}, got {_show(self.actual)}"


def _is_reasoning(key: object) -> bool:
    return isinstance(key, str) and key.startswith(REASONING_PREFIX)


def _scalar_equal(actual: Any, expected: Any) -> bool:
    if _is_number(actual) and _is_number(expected):
        return bool(actual == expected)  # 1 == 1.0: JSON has one number type
    # Otherwise the types must match, which keeps `true != 1` (bool is an int subclass).
    return type(actual) is type(expected) and bool(actual == expected)


def _first_difference(actual: Any, expected: Any, at: str = "") -> _Difference | None:
    """The first place where `actual` is not strictly, deeply equal to `expected`."""
    if isinstance(actual, dict) and isinstance(expected, dict):
        for key, want in expected.items():
            if _is_reasoning(key):
                continue
            if key not in actual:
                return _Difference(_join(at, key), want, _MISSING)
            difference = _first_difference(actual[key], want, _join(at, key))
            if difference is not None:
                return difference
        for key, got in actual.items():
            if not _is_reasoning(key) and key not in expected:
                return _Difference(_join(at, key), _MISSING, got)
        return None
    if isinstance(actual, list) and isinstance(expected, list):
        if len(actual) != len(expected):
            return _Difference(at, expected, actual)
        for index, (got, want) in enumerate(zip(actual, expected, strict=True)):
            difference = _first_difference(got, want, _join(at, index))
            if difference is not None:
                return difference
        return None
    return None if _scalar_equal(actual, expected) else _Difference(at, expected, actual)


def deep_equal(actual: Any, expected: Any) -> bool:
    """Strict deep equality of plain JSON values.

    Booleans never equal numbers (`true != 1`, at any depth); `1 == 1.0`; object
    keys starting with `reasoning___` are ignored on both sides at every depth.
    """
    return _first_difference(actual, expected) is None


def _first_uncontained(
    actual: dict[str, Any], expected: dict[str, Any], at: str = ""
) -> _Difference | None:
    """The first expected key missing from `actual`, or whose value is not contained."""
    for key, want in expected.items():
        if _is_reasoning(key):
            continue
        here = _join(at, key)
        if key not in actual:
            return _Difference(here, want, _MISSING)
        got = actual[key]
        if isinstance(got, dict) and isinstance(want, dict):
            difference = _first_uncontained(got, want, here)
        else:
            difference = _first_difference(got, want, here)
        if difference is not None:
            return difference
    return None


def object_contains(actual: dict[str, Any], expected: dict[str, Any]) -> bool:
    """Every expected key is present in `actual` and its value is contained.

    Nested objects are compared as subsets, anything else by `deep_equal`.
    """
    return _first_uncontained(actual, expected) is None


# Conditions -----------------------------------------------------------------

_OPS: dict[str, tuple[Callable[[Any, Any], bool], str]] = {
    "gt": (operator.gt, ">"),
    "gte": (operator.ge, ">="),
    "lt": (operator.lt, "<"),
    "lte": (operator.le, "<="),
    "eq": (operator.eq, "=="),
    "neq": (operator.ne, "!="),
}


def _compare(op: str, left: Any, right: Any) -> tuple[bool, str]:
    function, symbol = _OPS[op]
    return bool(function(left, right)), symbol


def _contains(actual: Any, expected: Any, *, negate: bool) -> _Verdict:
    if isinstance(actual, str):
        if not isinstance(expected, str):
            return _type_error("a string contains only a string", expected)
        found = expected in actual
    elif isinstance(actual, list):
        found = any(deep_equal(item, expected) for item in actual)
    else:
        return _type_error("contains needs a string or an array", actual)
    if negate:
        return _holds(not found, f"{_show(actual)} contains {_show(expected)}")
    return _holds(found, f"{_show(actual)} does not contain {_show(expected)}")


def _affix(actual: Any, expected: str, *, start: bool) -> _Verdict:
    kind = "starts_with" if start else "ends_with"
    if not isinstance(actual, str):
        return _type_error(f"{kind} needs a string", actual)
    ok = actual.startswith(expected) if start else actual.endswith(expected)
    verb = "start" if start else "end"
    return _holds(ok, f"{_show(actual)} does not {verb} with {_show(expected)}")


async def _matches_regex(actual: Any, pattern: str) -> _Verdict:
    if not isinstance(actual, str):
        return _type_error("matches_regex needs a string", actual)
    try:
        compiled = regex.compile(pattern)
    except regex.error as exc:
        return _blocked("invalid_regex", f"the pattern does not compile: {exc}", pattern=pattern)
    try:
        # In a thread (the match releases the GIL with concurrent=True) so that a
        # slow pattern holds up neither the event loop nor the runner's other tests.
        match = await asyncio.to_thread(
            compiled.fullmatch, actual, timeout=REGEX_TIMEOUT_S, concurrent=True
        )
    except TimeoutError:
        message = f"the pattern did not finish matching within {REGEX_TIMEOUT_S} s"
        return _blocked("regex_timeout", message, pattern=pattern)
    return _holds(match is not None, f"{_show(actual)} does not fully match {_show(pattern)}")


def _number_compare(actual: Any, op: str, expected: float) -> _Verdict:
    if not _is_number(actual):
        return _type_error("number_compare needs a number", actual)
    ok, symbol = _compare(op, actual, expected)
    return _holds(ok, f"{_show(actual)} is not {symbol} {_show(expected)}")


def _length_compare(actual: Any, op: str, expected: int) -> _Verdict:
    if not isinstance(actual, str | list | dict):
        return _type_error("length_compare needs a string, an array or an object", actual)
    length = len(actual)
    ok, symbol = _compare(op, length, expected)
    return _holds(ok, f"length {length} is not {symbol} {expected}", length=length)


def _between(actual: Any, condition: BetweenCondition) -> _Verdict:
    if not _is_number(actual):
        return _type_error("between needs a number", actual)
    lower, upper = condition.lower, condition.upper
    if condition.inclusive:
        ok = lower <= actual <= upper
        bounds = f"[{_show(lower)}, {_show(upper)}]"
    else:
        ok = lower < actual < upper
        bounds = f"({_show(lower)}, {_show(upper)})"
    return _holds(ok, f"{_show(actual)} is not within {bounds}")


def _object_contains(actual: Any, expected: dict[str, Any]) -> _Verdict:
    if not isinstance(actual, dict):
        return _type_error("object_contains needs an object", actual)
    difference = _first_uncontained(actual, expected)
    if difference is None:
        return _PASSED
    return _failed(
        f"the object does not contain the expected value {difference.describe()}",
        path=difference.path,
    )


def _array_contains(actual: Any, expected: dict[str, Any]) -> _Verdict:
    if not isinstance(actual, list):
        return _type_error("array_contains needs an array", actual)
    ok = any(isinstance(item, dict) and object_contains(item, expected) for item in actual)
    return _holds(ok, f"no element of the array ({len(actual)} items) contains {_show(expected)}")


# JSON Schema ----------------------------------------------------------------


def _pattern_with_timeout(
    validator: Validator, pattern: str, instance: Any, schema: Any
) -> Iterator[ValidationError]:
    """The `pattern` keyword with the same timeout as `matches_regex` (jsonschema uses `re`)."""
    if validator.is_type(instance, "string") and (
        regex.search(pattern, instance, timeout=REGEX_TIMEOUT_S) is None
    ):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@functools.cache
def _with_regex_timeout(base: type[Validator]) -> type[Validator]:
    # The stubs leave `extend` untyped; it returns a validator class like its argument.
    extended: type[Validator] = extend(base, {"pattern": _pattern_with_timeout})  # type: ignore[no-untyped-call]
    return extended


def _first_schema_errors(validator: Validator, instance: Any) -> list[ValidationError]:
    return list(itertools.islice(validator.iter_errors(instance), _MAX_SCHEMA_ERRORS))


async def _schema_valid(actual: Any, schema: dict[str, Any] | None) -> _Verdict:
    if schema is None:
        return _blocked("schema_invalid", "the condition has no schema")
    if not isinstance(schema.get("$schema", ""), str):  # validator_for would raise on it
        return _blocked("schema_invalid", "the schema's $schema is not a string")
    base = validator_for(schema, default=Draft202012Validator)
    try:
        base.check_schema(schema)
    except SchemaError as exc:
        return _blocked("schema_invalid", f"the schema is invalid: {exc.message}")
    validator = _with_regex_timeout(base)(schema)
    try:
        # A thread: validating a large value (or a slow pattern) must not stall the loop.
        errors = await asyncio.to_thread(_first_schema_errors, validator, actual)
    except Unresolvable as exc:
        return _blocked("schema_invalid", f"the schema has an unresolvable reference: {exc}")
    except regex.error as exc:
        return _blocked("schema_invalid", f"a pattern of the schema does not compile: {exc}")
    except TimeoutError:
        message = f"a pattern of the schema did not finish within {REGEX_TIMEOUT_S} s"
        return _blocked("regex_timeout", message)
    if not errors:
        return _PASSED
    first = errors[0]
    return _failed(
        f"{first.message} (at {first.json_path})",
        path=first.json_path,
        errors=[{"path": error.json_path, "message": error.message} for error in errors],
    )


# Items ----------------------------------------------------------------------


async def _items(
    actual: Any, inner: Condition, services: AssertionServices, *, every: bool
) -> _Verdict:
    kind = "all_items_match" if every else "any_item_matches"
    if not isinstance(actual, list):
        return _type_error(f"{kind} needs an array", actual)
    # Every item is evaluated, without short-circuit: a blocked item blocks the
    # whole assertion wherever it is, so the outcome does not depend on order.
    verdicts = [await _check(inner, item, services) for item in actual]
    for index, verdict in enumerate(verdicts):
        if verdict.outcome == "blocked" and verdict.failure is not None:
            inner_details = verdict.failure.details
            index_path = [index, *inner_details.get("index_path", [])]
            return _blocked(
                verdict.failure.code,
                f"item {index}: {verdict.failure.message}",
                **{**inner_details, "index": index, "index_path": index_path},
            )
    failed = [index for index, verdict in enumerate(verdicts) if verdict.outcome == "failed"]
    if every:
        if not failed:
            return _PASSED
        first = verdicts[failed[0]].failure
        message = first.message if first is not None else ""
        return _failed(
            f"item {failed[0]} does not match: {message}",
            index=failed[0],
            failed_indexes=failed,
        )
    if len(failed) < len(verdicts):
        return _PASSED
    if not verdicts:
        return _failed("the array is empty, so no item matches")
    return _failed(f"none of the {len(verdicts)} items matches")


# Scores ---------------------------------------------------------------------


class _Embedding(msgspec.Struct, frozen=True):
    embedding: list[float]  # the order of the two vectors does not matter: cosine is symmetric


class _EmbeddingsAnswer(msgspec.Struct, frozen=True):
    data: list[_Embedding]


class _JudgeAnswer(msgspec.Struct, frozen=True):
    label: str
    reasoning: Any = None  # documented as a string; anything else is kept as it is


class _ServiceError(Exception):
    """A judge or embeddings service did not give a usable answer."""


async def _post(session: aiohttp.ClientSession, url: str, body: Any, timeout_s: float) -> bytes:
    async with session.post(
        url,
        data=msgspec.json.encode(body),
        headers={"Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(total=timeout_s),
        # The operator's URL (JUDGE_URL, EMBEDDINGS_URL) is the final one: values
        # under test are never sent on to wherever a redirect points.
        allow_redirects=False,
    ) as response:
        if 300 <= response.status < 400:
            raise _ServiceError(
                f"answered HTTP {response.status} (a redirect; redirects are not followed: "
                "configure the final URL)"
            )
        if response.status >= 400:
            raise _ServiceError(f"answered HTTP {response.status}")
        return await response.read()


async def _post_json(services: AssertionServices, url: str, body: Any, answer: type[_T]) -> _T:
    """POST `body` as JSON and decode the answer as `answer`; any failure is a `_ServiceError`."""
    try:
        if services.session is None:
            async with aiohttp.ClientSession() as session:
                raw = await _post(session, url, body, services.timeout_s)
        else:
            raw = await _post(services.session, url, body, services.timeout_s)
    except TimeoutError as exc:
        raise _ServiceError(f"did not answer within {services.timeout_s} s") from exc
    except aiohttp.ClientError as exc:
        raise _ServiceError(f"could not be reached ({type(exc).__name__}: {exc})") from exc
    try:
        return msgspec.json.decode(raw, type=answer)
    except msgspec.DecodeError as exc:  # also ValidationError: JSON of the wrong shape
        raise _ServiceError(f"answered with an unusable body ({exc})") from exc


def _cosine(left: list[float], right: list[float]) -> float:
    """Cosine similarity clamped to [0, 1]; ValueError when it is undefined."""
    if len(left) != len(right):
        raise ValueError(f"the vectors have different lengths ({len(left)} and {len(right)})")
    norms = math.sqrt(math.fsum(x * x for x in left)) * math.sqrt(math.fsum(y * y for y in right))
    if norms == 0 or not math.isfinite(norms):
        raise ValueError("a vector is zero or not finite")
    dot = math.fsum(x * y for x, y in zip(left, right, strict=True))
    return min(1.0, max(0.0, dot / norms))


async def _embeddings_score(actual: str, reference: str, services: AssertionServices) -> float:
    if services.embeddings_url is None:
        raise _ServiceError("is not configured: set EMBEDDINGS_URL to use method embeddings")
    answer = await _post_json(
        services, services.embeddings_url, {"input": [actual, reference]}, _EmbeddingsAnswer
    )
    data = answer.data
    if len(data) != 2:
        raise _ServiceError(f"answered {len(data)} embeddings for 2 inputs")
    try:
        return _cosine(data[0].embedding, data[1].embedding)
    except ValueError as exc:
        raise _ServiceError(f"answered unusable embeddings: {exc}") from exc


async def _similarity(
    actual: Any, condition: SimilarityGteCondition, services: AssertionServices
) -> _Verdict:
    text, reference = _canonical_text(actual), _canonical_text(condition.reference)
    if condition.method == "levenshtein":
        score = float(Levenshtein.normalized_similarity(text, reference))
    else:
        try:
            score = await _embeddings_score(text, reference, services)
        except _ServiceError as exc:
            return _blocked("embeddings_unavailable", f"the embeddings service {exc}")
    threshold = float(condition.threshold)
    message = f"similarity {score:.4f} is below the threshold {threshold}"
    return _holds(score >= threshold, message, score)


def _split_pages(value: Any) -> dict[str, set[int]] | None:
    """Splits (`{"splits": [{name, pages}]}` or a bare list) as name -> pages; None if malformed."""
    splits = value.get("splits") if isinstance(value, dict) else value
    if not isinstance(splits, list):
        return None
    pages_of: dict[str, set[int]] = {}
    for split in splits:
        if not isinstance(split, dict):
            return None
        name, pages = split.get("name"), split.get("pages")
        if not isinstance(name, str) or not isinstance(pages, list):
            return None
        if not all(_is_int(page) for page in pages):
            return None
        pages_of.setdefault(name, set()).update(pages)  # a repeated name adds its pages
    return pages_of


def _iou(left: set[int], right: set[int]) -> float:
    union = left | right
    return 1.0 if not union else len(left & right) / len(union)


def split_iou(
    actual: dict[str, set[int]], expected: dict[str, set[int]]
) -> tuple[float, dict[str, float]]:
    """Mean intersection over union of page sets, per split name, and each name's IoU.

    A name on one side only scores 0; no split on either side scores 1.
    """
    per_split = {
        name: _iou(actual[name], expected[name]) if name in actual and name in expected else 0.0
        for name in sorted(actual.keys() | expected.keys())
    }
    if not per_split:
        return 1.0, per_split
    return math.fsum(per_split.values()) / len(per_split), per_split


def _split_iou(actual: Any, condition: SplitIouGteCondition) -> _Verdict:
    expected = _split_pages(condition.expected)
    if expected is None:
        message = 'the expected value is not {"splits": [{"name": str, "pages": [int]}]}'
        return _blocked("invalid_condition", message)
    found = _split_pages(actual)
    if found is None:
        message = (
            'split_iou_gte needs {"splits": [{"name": str, "pages": [int]}]} or a list of splits'
        )
        return _blocked("type_error", message, actual_type=json_type(actual))
    score, per_split = split_iou(found, expected)
    threshold = float(condition.threshold)
    message = f"split IoU {score:.4f} is below the threshold {threshold}"
    return _holds(score >= threshold, message, score, per_split=per_split)


# Judge ----------------------------------------------------------------------


async def _judge(
    actual: Any,
    rubric: str,
    expected_label: str | None,
    services: AssertionServices,
    *,
    negate: bool,
) -> _Verdict:
    label = DEFAULT_JUDGE_LABEL if expected_label is None else expected_label
    if services.judge_url is None:
        message = "no judge is configured: set JUDGE_URL to evaluate llm_judged_as conditions"
        return _blocked("judge_unavailable", message)
    body = {"rubric": rubric, "value": actual, "expected_label": label}
    try:
        answer = await _post_json(services, services.judge_url, body, _JudgeAnswer)
    except _ServiceError as exc:
        return _blocked("judge_unavailable", f"the judge {exc}")
    same = answer.label.strip().casefold() == label.strip().casefold()
    details = {"label": answer.label, "reasoning": answer.reasoning, "rubric": rubric}
    if negate:
        return _holds(
            not same, f"the judge answered {answer.label!r}, the label it must not give", **details
        )
    return _holds(same, f"the judge answered {answer.label!r}, expected {label!r}", **details)


# Dispatch -------------------------------------------------------------------


async def _check(condition: Condition, actual: Any, services: AssertionServices) -> _Verdict:
    """Evaluate a condition on a present value (a resolved path, or an item of a list)."""
    match condition:
        case ExistsCondition():
            return _PASSED
        case NotExistsCondition():
            return _failed(f"a value is present: {_show(actual)}")
        case EqualsCondition(expected=expected):
            difference = _first_difference(actual, expected)
            if difference is None:
                return _PASSED
            return _failed(f"not equal {difference.describe()}", path=difference.path)
        case NotEqualsCondition(expected=expected):
            return _holds(not deep_equal(actual, expected), f"equal to {_show(expected)}")
        case ContainsCondition(expected=expected):
            return _contains(actual, expected, negate=False)
        case NotContainsCondition(expected=expected):
            return _contains(actual, expected, negate=True)
        case StartsWithCondition(expected=expected):
            return _affix(actual, expected, start=True)
        case EndsWithCondition(expected=expected):
            return _affix(actual, expected, start=False)
        case MatchesRegexCondition(pattern=pattern):
            return await _matches_regex(actual, pattern)
        case NumberCompareCondition(op=op, expected=expected):
            return _number_compare(actual, op, expected)
        case LengthCompareCondition(op=op, expected=expected):
            return _length_compare(actual, op, expected)
        case BetweenCondition():
            return _between(actual, condition)
        case ObjectContainsCondition(expected=expected):
            return _object_contains(actual, expected)
        case ArrayContainsCondition(expected=expected):
            return _array_contains(actual, expected)
        case JsonSchemaValidCondition(schema=schema):
            return await _schema_valid(actual, schema)
        case AllItemsMatchCondition(condition=inner):
            return await _items(actual, inner, services, every=True)
        case AnyItemMatchesCondition(condition=inner):
            return await _items(actual, inner, services, every=False)
        case SimilarityGteCondition():
            return await _similarity(actual, condition, services)
        case SplitIouGteCondition():
            return _split_iou(actual, condition)
        case LlmJudgedAsCondition(rubric=rubric, expected_label=label):
            return await _judge(actual, rubric, label, services, negate=False)
        case LlmNotJudgedAsCondition(rubric=rubric, expected_label=label):
            return await _judge(actual, rubric, label, services, negate=True)
        case _:
            assert_never(condition)


def _unresolved(condition: Condition, path: str, unresolved: Unresolved) -> _Verdict:
    partial = {"partial_path": unresolved.partial_path, "partial_value": unresolved.partial_value}
    match condition:
        case NotExistsCondition():
            return _PASSED
        case ExistsCondition():
            return _failed(f"nothing at '{path}': {unresolved.explanation}", **partial)
        case _ if unresolved.reason == "absent":
            message = f"path '{path}' not found: {unresolved.explanation}"
            return _blocked("path_not_found", message, **partial)
        case _:
            return _blocked("type_error", f"path '{path}': {unresolved.explanation}", **partial)


def _missing_handle(handle: str, outputs: dict[str, Any] | None) -> _Verdict:
    present = sorted(outputs or {})
    listed = ", ".join(f"'{name}'" for name in present) if present else "none"
    message = f"output handle '{handle}' is missing; handles present: {listed}"
    return _blocked("missing_handle", message, handle=handle, present=present)


def kind_of(condition: Condition) -> str:
    """The `kind` tag of a condition (`equals`, `split_iou_gte`, ...)."""
    return str(type(condition).__struct_config__.tag)


def expected_of(condition: Condition) -> Any:
    """What a condition compares against, as shown in `expected_value` of the result."""
    match condition:
        case ExistsCondition() | NotExistsCondition():
            return None
        case MatchesRegexCondition(pattern=pattern):
            return pattern
        case BetweenCondition(lower=lower, upper=upper, inclusive=inclusive):
            return {"lower": lower, "upper": upper, "inclusive": inclusive}
        case JsonSchemaValidCondition(schema=schema):
            return schema
        case AllItemsMatchCondition(condition=inner) | AnyItemMatchesCondition(condition=inner):
            return msgspec.to_builtins(inner)
        case SimilarityGteCondition(reference=reference):
            return reference
        case (
            LlmJudgedAsCondition(expected_label=label)
            | LlmNotJudgedAsCondition(expected_label=label)
        ):
            return DEFAULT_JUDGE_LABEL if label is None else label
        case _:
            return condition.expected


def _metric_of(condition: Condition) -> tuple[float | None, str | None]:
    """`threshold` and `metric_kind` of the scored conditions (None for the others)."""
    match condition:
        case SimilarityGteCondition(threshold=threshold, method=method):
            metric_kind = "levenshtein" if method == "levenshtein" else "embeddings_cosine"
            return float(threshold), metric_kind
        case SplitIouGteCondition(threshold=threshold):
            return float(threshold), "split_iou"
        case _:
            return None, None


def _undecodable(assertion: dict[str, Any], error: msgspec.ValidationError) -> AssertionResult:
    condition = assertion.get("condition")
    kind = condition.get("kind") if isinstance(condition, dict) else None
    failure = AssertionFailure(
        code="invalid_assertion", message=f"the stored assertion does not decode: {error}"
    )
    identifier = assertion.get("id")
    return AssertionResult(
        assertion_id=identifier if isinstance(identifier, str) else "",
        condition_kind=kind if isinstance(kind, str) else "",
        outcome="blocked",
        failure=failure,
    )


async def evaluate(
    assertion: dict[str, Any], outputs: dict[str, Any] | None, services: AssertionServices
) -> AssertionResult:
    """Evaluate a stored assertion against a block's outputs.

    `assertion` is the stored JSON of an `AssertionSpec`; `outputs` maps output
    handle id -> plain JSON value (None when the block produced none);
    `services` holds the judge and embeddings endpoints. Problems with values
    (a missing handle or path, a wrong type, a bad regex or schema, an
    unavailable service) give a `blocked` result, never an exception.
    """
    try:
        spec = msgspec.convert(assertion, AssertionSpec)
    except msgspec.ValidationError as exc:
        return _undecodable(assertion, exc)
    condition, target = spec.condition, spec.target
    actual: Any = None
    if outputs is None or target.output_handle_id not in outputs:
        verdict = _missing_handle(target.output_handle_id, outputs)
    else:
        resolved = resolve_path(outputs[target.output_handle_id], target.path)
        try:
            if isinstance(resolved, Unresolved):
                verdict = _unresolved(condition, target.path or "", resolved)
            else:
                actual = resolved.value
                verdict = await _check(condition, actual, services)
        except RecursionError:
            # Values nested deeper than Python's recursion limit cannot be compared.
            verdict = _blocked("value_too_deep", "the value is nested too deeply to evaluate")
    threshold, metric_kind = _metric_of(condition)
    return AssertionResult(
        assertion_id=spec.id or "",
        condition_kind=kind_of(condition),
        outcome=verdict.outcome,
        actual_value=actual,
        expected_value=expected_of(condition),
        score=verdict.score,
        threshold=threshold,
        metric_kind=metric_kind,
        assertion_label=spec.label,
        failure=verdict.failure,
    )
