"""What can be known wrong about a saved test before it runs.

A test is saved even when it is broken (users save drafts); its
`validation_status` and `validation_issues` say what is wrong, each issue with
the JSON path of the field at fault. The checks are pure and cheap, so they run
against the test and its block as they are now, on every read: a change to the
block re-validates its tests at once, and a run's blocked result can say which
of them made it blocked.

Checked: the block exists and its type is known; the config of the block types
this service executes itself (`api_call`, `function`) has what they need; a
regular expression compiles
(with the `regex` engine the run uses); a JSON Schema is itself valid; bounds
are in order and lengths not negative; nested conditions, recursively; the
output handle exists for block types whose outputs are known.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import msgspec
import regex
import yarl
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from service.models import ValidationIssue

# The `api_call` block's contract, shared with its executor: the handle its
# answer comes out on, and the methods it may use.
API_CALL_OUTPUT = "output-json-0"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})

# The SDK's block types (WorkflowBlockType of both releases).
KNOWN_BLOCK_TYPES = frozenset(
    {
        "start_document",
        "start_json",
        "note",
        "parse",
        "edit",
        "extract",
        "split",
        "classifier",
        "conditional",
        "api_call",
        "function",
        "while_loop",
        "for_each",
        "merge_dicts",
        "while_loop_sentinel_start",
        "while_loop_sentinel_end",
        "for_each_sentinel_start",
        "for_each_sentinel_end",
    }
)

# The output handles of the block types whose outputs this service knows.
KNOWN_OUTPUTS: dict[str, frozenset[str]] = {"api_call": frozenset({API_CALL_OUTPUT})}

_encode = msgspec.json.Encoder(order="deterministic").encode


def validate(
    block_type: str | None, block_config: dict[str, Any] | None, assertion: dict[str, Any]
) -> list[ValidationIssue]:
    """Every problem of a saved test whose block has `block_type` (None: no such block).

    `block_config`: its config; `assertion`: the stored assertion as JSON.
    Paths point into the saved test's JSON: a problem of the block is at
    `$.target.block_id`.
    """
    issues: list[ValidationIssue] = []
    if block_type is None:
        issues.append(_issue("$.target.block_id", "block_not_found", "the block does not exist"))
    elif block_type not in KNOWN_BLOCK_TYPES:
        issues.append(
            _issue(
                "$.target.block_id",
                "unknown_block_type",
                f"the block's type `{block_type}` is not a known block type",
            )
        )
    elif block_config is not None:
        issues.extend(
            _issue("$.target.block_id", "invalid_block_config", message)
            for message in _config_problems(block_type, block_config)
        )
    target = assertion.get("target") or {}
    handle = target.get("output_handle_id")
    outputs = KNOWN_OUTPUTS.get(block_type or "")
    if outputs is not None and handle not in outputs:
        known = ", ".join(sorted(outputs))
        issues.append(
            _issue(
                "$.assertion.target.output_handle_id",
                "unknown_output_handle",
                f"a `{block_type}` block has no output handle `{handle}` (it has: {known})",
            )
        )
    issues.extend(_condition(assertion.get("condition") or {}, "$.assertion.condition"))
    return issues


def status_of(issues: list[ValidationIssue]) -> Literal["valid", "invalid"]:
    """`valid` without issues, `invalid` with any."""
    return "invalid" if issues else "valid"


def describe(issues: list[ValidationIssue]) -> str:
    """One line naming every issue, for a blocked result's message."""
    return "; ".join(f"{issue.path}: {issue.message}" for issue in issues)


def _issue(path: str, code: str, message: str) -> ValidationIssue:
    return ValidationIssue(path=path, code=code, message=message)


def _config_problems(block_type: str, config: dict[str, Any]) -> list[str]:
    """What the executor of `api_call` or `function` would refuse in this config."""
    problems: list[str] = []
    if block_type == "api_call":
        url = config.get("url")
        if not _http_url(url):
            problems.append(f"the api_call block's `url` must be an http(s) URL, got {url!r}")
        method = config.get("method", "POST")
        if not isinstance(method, str) or method.upper() not in METHODS:
            choices = ", ".join(sorted(METHODS))
            problems.append(f"the api_call block's `method` must be one of {choices}")
    elif block_type == "function":
        entrypoint = config.get("entrypoint")
        if not isinstance(entrypoint, str) or entrypoint.count(":") != 1:
            problems.append(
                "the function block's `entrypoint` must be 'package.module:function',"
                f" got {entrypoint!r}"
            )
    return problems


def _http_url(value: Any) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError):
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def _condition(condition: dict[str, Any], path: str) -> list[ValidationIssue]:
    kind = condition.get("kind")
    if kind == "matches_regex":
        problem = _regex_problem(str(condition.get("pattern", "")))
        if problem:
            return [_issue(f"{path}.pattern", "invalid_regex", problem)]
    elif kind == "json_schema_valid":
        schema = condition.get("schema")
        if schema is None:
            return [_issue(f"{path}.schema", "schema_invalid", "the condition has no schema")]
        problem = _schema_problem(_encode(schema))
        if problem:
            return [_issue(f"{path}.schema", "schema_invalid", problem)]
    elif kind == "between":
        lower, upper = condition.get("lower"), condition.get("upper")
        if isinstance(lower, int | float) and isinstance(upper, int | float) and lower > upper:
            message = f"`lower` ({lower}) is greater than `upper` ({upper}): nothing is between"
            return [_issue(f"{path}.lower", "invalid_bounds", message)]
    elif kind == "length_compare":
        expected = condition.get("expected")
        if isinstance(expected, int) and expected < 0:
            message = f"a length is never negative (expected {expected})"
            return [_issue(f"{path}.expected", "out_of_range", message)]
    elif kind in ("all_items_match", "any_item_matches"):
        return _condition(condition.get("condition") or {}, f"{path}.condition")
    return []


@functools.lru_cache(maxsize=1024)
def _regex_problem(pattern: str) -> str | None:
    """Why the pattern does not compile in the run's engine, or None."""
    try:
        regex.compile(pattern)
    except regex.error as error:
        return f"the pattern does not compile: {error}"
    return None


@functools.lru_cache(maxsize=256)
def _schema_problem(encoded: bytes) -> str | None:
    """Why the JSON Schema (as canonical JSON) is not a valid schema, or None."""
    schema = msgspec.json.decode(encoded)
    if not isinstance(schema, dict):
        return "the schema is not an object"
    if not isinstance(schema.get("$schema", ""), str):
        return "the schema's $schema is not a string"
    try:
        validator_for(schema, default=Draft202012Validator).check_schema(schema)
    except SchemaError as error:
        return f"the schema is invalid: {error.message}"
    return None
