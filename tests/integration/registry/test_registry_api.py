"""Just enough registry to create runs: workflows, blocks and saved tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import OTHER_API_KEY, ApiClient


async def test_create_get_and_list_workflows(client: ApiClient) -> None:
    """A workflow is created with its fields and a draft version, then listed newest first."""
    first = await client.call(
        "POST",
        "/v1/workflows",
        {"name": "Invoices", "description": "AP", "project_id": "proj_1"},
        expect=201,
    )
    assert first["id"].startswith("wf_")
    assert ("Invoices", "AP", "proj_1") == (
        first["name"],
        first["description"],
        first["project_id"],
    )
    assert first["draft_version_id"].startswith("draft_")
    assert first["created_at"].endswith("Z")
    second = await client.workflow("Receipts")
    assert first == await client.call("GET", f"/v1/workflows/{first['id']}", expect=200)
    listed = await client.call("GET", "/v1/workflows", expect=200)
    assert [second["id"], first["id"]] == [w["id"] for w in listed["data"]]
    assert {"before": None, "after": None} == listed["list_metadata"]


async def test_workflow_list_pages_with_cursors(client: ApiClient) -> None:
    """Five workflows in pages of two: `after` walks forward, is null on the last page."""
    made = [(await client.workflow(f"w{i}"))["id"] for i in range(5)]
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "order": "asc"}
        if after:
            params["after"] = after
        page = await client.call("GET", "/v1/workflows", expect=200, **params)
        seen += [w["id"] for w in page["data"]]
        pages += 1
        after = page["list_metadata"]["after"]
        if after is None:
            break
    assert made == seen
    assert 3 == pages
    error = await client.call("GET", "/v1/workflows", expect=400, before="x", after="y")
    assert "invalid_pagination" == error["detail"]["code"]
    await client.call("GET", "/v1/workflows", expect=422, limit=0)
    await client.call("GET", "/v1/workflows", expect=422, limit=101)
    await client.call("GET", "/v1/workflows", expect=422, order="sideways")
    await client.call("GET", "/v1/workflows", expect=400, after="not-a-cursor")


async def test_workflow_list_pages_backwards(client: ApiClient) -> None:
    """`before` walks back from a cursor; `after` is null on the last page."""
    made = [(await client.workflow(f"w{i}"))["id"] for i in range(5)]
    first = await client.call("GET", "/v1/workflows", expect=200, limit=4)
    assert list(reversed(made))[:4] == [w["id"] for w in first["data"]]
    cursor = first["list_metadata"]["after"]
    tail = await client.call("GET", "/v1/workflows", expect=200, limit=4, after=cursor)
    assert [made[0]] == [w["id"] for w in tail["data"]]
    assert tail["list_metadata"]["after"] is None
    back = await client.call(
        "GET", "/v1/workflows", expect=200, limit=2, before=tail["list_metadata"]["before"]
    )
    assert [made[2], made[1]] == [w["id"] for w in back["data"]]
    assert back["list_metadata"]["before"] is not None


async def test_blocks_change_the_draft_and_chosen_ids_are_unique(client: ApiClient) -> None:
    """Each new block makes a new draft version id; a chosen id already used is 409."""
    workflow = await client.workflow()
    block = await client.block(
        workflow["id"], id="block_extract_invoice", label="Extract", config={"model": "m1"}
    )
    assert {"id": "block_extract_invoice", "type": "extract", "label": "Extract"} == {
        k: block[k] for k in ("id", "type", "label")
    }
    assert {"model": "m1"} == block["config"]
    after_one = await client.call("GET", f"/v1/workflows/{workflow['id']}", expect=200)
    assert workflow["draft_version_id"] != after_one["draft_version_id"]
    generated = await client.block(workflow["id"], type="classifier")
    assert generated["id"].startswith("blk_")
    after_two = await client.call("GET", f"/v1/workflows/{workflow['id']}", expect=200)
    assert after_one["draft_version_id"] != after_two["draft_version_id"]
    other_workflow = await client.workflow("other")
    conflict = await client.call(
        "POST",
        "/v1/workflows/blocks",
        {"workflow_id": other_workflow["id"], "type": "extract", "id": "block_extract_invoice"},
        expect=409,
    )
    assert "block_id_conflict" == conflict["detail"]["code"]
    # Another organisation may choose the same id: ids are unique within an organisation.
    theirs = await client.call(
        "POST", "/v1/workflows", {"name": "x"}, key=OTHER_API_KEY, expect=201
    )
    await client.call(
        "POST",
        "/v1/workflows/blocks",
        {"workflow_id": theirs["id"], "type": "extract", "id": "block_extract_invoice"},
        key=OTHER_API_KEY,
        expect=201,
    )


@pytest.mark.parametrize(
    "body",
    [
        {"type": "extract"},
        {"workflow_id": "wf_x", "type": "Not A Type"},
        {"workflow_id": "wf_x", "type": "extract", "config": [1, 2]},
    ],
)
async def test_bad_block_bodies_are_422(client: ApiClient, body: dict[str, Any]) -> None:
    """A block body without a workflow, with a bad type or a non-object config is a 422."""
    await client.call("POST", "/v1/workflows/blocks", body, expect=422)


async def test_block_of_an_unknown_workflow_is_404(client: ApiClient) -> None:
    """A block for a workflow that does not exist is a 404, and nothing is stored."""
    error = await client.call(
        "POST", "/v1/workflows/blocks", {"workflow_id": "wf_nope", "type": "extract"}, expect=404
    )
    assert "workflow_not_found" == error["detail"]["code"]


async def test_saved_tests_create_and_list(client: ApiClient) -> None:
    """A saved test gets an id, an assertion id, and is listed per workflow and per block."""
    workflow = await client.workflow()
    extract = await client.block(workflow["id"])
    classify = await client.block(workflow["id"], type="classifier")
    made = await client.test(workflow["id"], extract["id"], name="vendor")
    assert made["id"].startswith("wfnodetest_")
    assert made["assertion"]["id"].startswith("assert_")
    assert {"type": "block", "block_id": extract["id"]} == made["target"]
    assert "vendor" == made["name"]
    assert {"input-json-0": {"type": "json", "data": {"n": 1}}} == made["source"]["handle_inputs"]
    assert {"kind": "equals", "expected": "ACME"} == made["assertion"]["condition"]
    chosen = await client.test(
        workflow["id"],
        classify["id"],
        assertion={
            "id": "assert_mine",
            "target": {"output_handle_id": "output-json-0"},
            "condition": {"kind": "all_items_match", "condition": {"kind": "exists"}},
            "label": "every item",
        },
    )
    assert "assert_mine" == chosen["assertion"]["id"]
    listed = await client.call("GET", "/v1/workflows/tests", expect=200, workflow_id=workflow["id"])
    assert [chosen["id"], made["id"]] == [t["id"] for t in listed["data"]]
    by_block = await client.call(
        "GET",
        "/v1/workflows/tests",
        expect=200,
        workflow_id=workflow["id"],
        target_block_id=classify["id"],
    )
    assert [chosen["id"]] == [t["id"] for t in by_block["data"]]


async def test_saved_test_errors(client: ApiClient) -> None:
    """Missing workflow_id is 422, unknown workflow or block 404, run_step sources 422."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    await client.call("GET", "/v1/workflows/tests", expect=422)
    await client.call("GET", "/v1/workflows/tests", expect=404, workflow_id="wf_nope")
    base = {
        "workflow_id": workflow["id"],
        "target": {"type": "block", "block_id": block["id"]},
        "source": {"type": "manual"},
        "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
    }
    unknown_block = {**base, "target": {"type": "block", "block_id": "blk_nope"}}
    error = await client.call("POST", "/v1/workflows/tests", unknown_block, expect=404)
    assert "block_not_found" == error["detail"]["code"]
    other = await client.workflow("other")
    wrong_workflow = {**base, "workflow_id": other["id"]}
    await client.call("POST", "/v1/workflows/tests", wrong_workflow, expect=404)
    run_step = {**base, "source": {"type": "run_step", "run_id": "run_1"}}
    problem = await client.call("POST", "/v1/workflows/tests", run_step, expect=422)
    assert ["body", "source", "type"] == problem["detail"][0]["loc"]
    bad_condition = {
        **base,
        "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "nope"}},
    }
    problem = await client.call("POST", "/v1/workflows/tests", bad_condition, expect=422)
    assert ["body", "assertion", "condition", "kind"] == problem["detail"][0]["loc"]
    bad_threshold = {
        **base,
        "assertion": {
            "target": {"output_handle_id": "o"},
            "condition": {"kind": "similarity_gte", "reference": "x", "threshold": 2},
        },
    }
    await client.call("POST", "/v1/workflows/tests", bad_threshold, expect=422)
    listed = await client.call("GET", "/v1/workflows/tests", expect=200, workflow_id=workflow["id"])
    assert [] == listed["data"]


async def test_health_and_readiness(client: ApiClient) -> None:
    """/healthz answers without a key; /readyz checks the database and the migrations."""
    assert {"status": "ok"} == await client.call("GET", "/healthz", key=None, expect=200)
    assert {"status": "ok"} == await client.call("GET", "/readyz", key=None, expect=200)
