"""Saved tests are validated when saved, and again whenever their block changes.

A broken test is still saved (a draft); `validation_status` and
`validation_issues` (each with its JSON path) say what is wrong, and a run's
blocked result of it says which issue blocked it.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import ApiClient
from tests.integration.execution.test_execution import _pool, running, until

TESTS = "/v1/workflows/tests"
BLOCKS = "/v1/workflows/blocks"
FUNCTION = {"entrypoint": "tests.run_functions:invoice"}


def _assertion(condition: dict[str, Any], handle: str = "output-json-0") -> dict[str, Any]:
    return {"target": {"output_handle_id": handle, "path": "vendor.name"}, "condition": condition}


def _issues(test: dict[str, Any]) -> list[tuple[str, str]]:
    return [(issue["path"], issue["code"]) for issue in test["validation_issues"]]


async def test_a_broken_test_is_saved_with_its_issues_and_fixed_by_an_update(
    client: ApiClient,
) -> None:
    """Create answers 201 with `invalid` and each issue's path; get and list say the same;
    an update that fixes the assertion makes it `valid`."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"], type="function", config=FUNCTION)
    broken = await client.test(
        workflow["id"],
        block["id"],
        assertion=_assertion(
            {"kind": "all_items_match", "condition": {"kind": "matches_regex", "pattern": "(a"}}
        ),
    )
    assert "invalid" == broken["validation_status"]
    [issue] = broken["validation_issues"]
    assert "$.assertion.condition.condition.pattern" == issue["path"]
    assert "invalid_regex" == issue["code"]
    assert "does not compile" in issue["message"]
    assert broken == await client.call("GET", f"{TESTS}/{broken['id']}", expect=200)
    listed = await client.call("GET", TESTS, expect=200, workflow_id=workflow["id"])
    assert [broken] == listed["data"]

    schema = await client.call(
        "PATCH",
        f"{TESTS}/{broken['id']}",
        {"assertion": _assertion({"kind": "json_schema_valid", "schema": {"type": 7}})},
        expect=200,
    )
    assert [("$.assertion.condition.schema", "schema_invalid")] == _issues(schema)
    fixed = await client.call(
        "PATCH",
        f"{TESTS}/{broken['id']}",
        {"assertion": _assertion({"kind": "matches_regex", "pattern": "AC.*"})},
        expect=200,
    )
    assert "valid" == fixed["validation_status"]
    assert [] == fixed["validation_issues"]


async def test_a_change_to_the_block_revalidates_its_tests(client: ApiClient) -> None:
    """A test of an api_call block reads `invalid` while the block's url is unusable, and
    `valid` as soon as the block is fixed; its output handle is checked against the
    block's known output."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"], type="api_call", config={"url": "not a url"})
    test = await client.test(workflow["id"], block["id"], assertion=_assertion({"kind": "exists"}))
    assert [("$.target.block_id", "invalid_block_config")] == _issues(test)
    wrong_handle = await client.test(
        workflow["id"], block["id"], assertion=_assertion({"kind": "exists"}, handle="out-9")
    )
    assert [
        ("$.target.block_id", "invalid_block_config"),
        ("$.assertion.target.output_handle_id", "unknown_output_handle"),
    ] == _issues(wrong_handle)

    await client.call(
        "PATCH", f"{BLOCKS}/{block['id']}", {"config": {"url": "https://example.org/x"}}, expect=200
    )
    now = await client.call("GET", f"{TESTS}/{test['id']}", expect=200)
    assert "valid" == now["validation_status"]
    assert [] == now["validation_issues"]
    still = await client.call("GET", f"{TESTS}/{wrong_handle['id']}", expect=200)
    assert [("$.assertion.target.output_handle_id", "unknown_output_handle")] == _issues(still)

    await client.call(
        "PATCH", f"{BLOCKS}/{block['id']}", {"config": {"method": "BREW"}}, expect=200
    )
    again = await client.call("GET", f"{TESTS}/{test['id']}", expect=200)
    assert "invalid" == again["validation_status"]
    assert "`method`" in again["validation_issues"][0]["message"]


async def test_a_blocked_result_says_which_validation_issue_blocked_it(
    client: ApiClient,
) -> None:
    """The run still runs an invalid test; its blocked result's failure carries the issues
    (`details.validation_issues`, the message) and one warning per issue; a valid test's
    result has neither."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"], type="function", config=FUNCTION)
    source = {"type": "manual", "handle_inputs": {"input": {"type": "json", "data": {"name": "A"}}}}
    invalid = await client.test(
        workflow["id"],
        block["id"],
        source=source,
        assertion=_assertion({"kind": "matches_regex", "pattern": "["}),
    )
    valid = await client.test(
        workflow["id"],
        block["id"],
        source=source,
        assertion=_assertion({"kind": "equals", "expected": "A"}),
    )
    run = await client.call("POST", f"{TESTS}/runs", {"workflow_id": workflow["id"]}, expect=202)

    async def finished() -> bool:
        current = await client.call("GET", f"{TESTS}/runs/{run['id']}", expect=200)
        return bool("completed" == current["lifecycle"]["status"])

    async with running(_pool(client)):
        await until(finished)
    page = await client.call("GET", f"{TESTS}/results", expect=200, run_id=run["id"])
    results = {result["test_id"]: result for result in page["data"]}
    blocked = results[invalid["id"]]
    assert "blocked" == blocked["verdict"]
    failure = blocked["assertion_result"]["failure"]
    assert "invalid_regex" == failure["code"]
    assert [
        {
            "path": "$.assertion.condition.pattern",
            "code": "invalid_regex",
            "message": invalid["validation_issues"][0]["message"],
        }
    ] == failure["details"]["validation_issues"]
    assert "the saved test is invalid: $.assertion.condition.pattern" in failure["message"]
    message = invalid["validation_issues"][0]["message"]
    assert [f"$.assertion.condition.pattern: invalid_regex: {message}"] == blocked["warnings"]
    passed = results[valid["id"]]
    assert "passed" == passed["verdict"]
    assert [] == passed["warnings"]
