"""Changing and deleting workflows, blocks and saved tests; freshness follows at once."""

from __future__ import annotations

from typing import Any

from tests.helpers import OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"


async def _world(client: ApiClient) -> dict[str, Any]:
    workflow = await client.workflow()
    block = await client.block(workflow["id"], config={"model": "m1", "temperature": 0})
    test = await client.test(workflow["id"], block["id"], name="vendor")
    run = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    return {"workflow": workflow, "block": block, "test": test, "run": run}


async def _freshness(client: ApiClient, run_id: str) -> tuple[str, list[str]]:
    run = await client.call("GET", f"{RUNS}/{run_id}", expect=200)
    return run["freshness"]["status"], run["freshness"]["reasons"]


async def test_workflow_patch_and_delete(client: ApiClient) -> None:
    """PATCH changes only what is sent; DELETE is 204 and the workflow's runs stay readable."""
    world = await _world(client)
    path = f"/v1/workflows/{world['workflow']['id']}"
    patched = await client.call("PATCH", path, {"name": "Renamed"}, expect=200)
    assert ("Renamed", "") == (patched["name"], patched["description"])
    patched = await client.call("PATCH", path, {"description": "AP"}, expect=200)
    assert ("Renamed", "AP") == (patched["name"], patched["description"])
    await client.call("PATCH", path, {"name": 5}, expect=422)
    await client.call("PATCH", path, {"name": "x"}, key=OTHER_API_KEY, expect=404)
    await client.call("DELETE", path, key=OTHER_API_KEY, expect=404)
    assert 204 == (await client.http.delete(path, headers=_auth())).status
    await client.call("GET", path, expect=404)
    await client.call("DELETE", path, expect=404)
    await client.call("GET", f"/v1/workflows/tests/{world['test']['id']}", expect=404)
    run = await client.call("GET", f"{RUNS}/{world['run']['id']}", expect=200)
    assert world["run"]["id"] == run["id"]
    assert "stale" == run["freshness"]["status"]
    results = await client.call(
        "GET", "/v1/workflows/tests/results", expect=200, run_id=world["run"]["id"]
    )
    assert 1 == len(results["data"])


def _auth(key: str = "rtk_test_key_organisation_a") -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_blocks_list_get_patch_delete(client: ApiClient) -> None:
    """Blocks are listed per workflow; a config change is a new draft and makes runs stale."""
    world = await _world(client)
    workflow_id, block = world["workflow"]["id"], world["block"]
    other = await client.block(workflow_id, type="classifier")
    listed = await client.call("GET", "/v1/workflows/blocks", expect=200, workflow_id=workflow_id)
    assert [other["id"], block["id"]] == [b["id"] for b in listed["data"]]
    await client.call("GET", "/v1/workflows/blocks", expect=422)
    await client.call("GET", "/v1/workflows/blocks", expect=404, workflow_id="wf_nope")
    path = f"/v1/workflows/blocks/{block['id']}"
    assert block == await client.call("GET", path, expect=200)
    await client.call("GET", path, key=OTHER_API_KEY, expect=404)

    draft = (await client.call("GET", f"/v1/workflows/{workflow_id}", expect=200))[
        "draft_version_id"
    ]
    labelled = await client.call("PATCH", path, {"label": "Extract"}, expect=200)
    assert "Extract" == labelled["label"]
    assert {"model": "m1", "temperature": 0} == labelled["config"]
    after_label = (await client.call("GET", f"/v1/workflows/{workflow_id}", expect=200))[
        "draft_version_id"
    ]
    assert draft != after_label, "any change to a block makes a new draft version"
    assert ("fresh", []) == await _freshness(client, world["run"]["id"])

    merged = await client.call("PATCH", path, {"config": {"model": "m2"}}, expect=200)
    assert {"model": "m2", "temperature": 0} == merged["config"]
    assert ("stale", ["engine_changed"]) == await _freshness(client, world["run"]["id"])
    replaced = await client.call(
        "PATCH", path, {"config": {"model": "m1"}, "config_mode": "replace"}, expect=200
    )
    assert {"model": "m1"} == replaced["config"]
    await client.call("PATCH", path, {"config": [1]}, expect=422)
    await client.call("PATCH", path, {"label": "x"}, key=OTHER_API_KEY, expect=404)

    assert 204 == (await client.http.delete(path, headers=_auth())).status
    await client.call("GET", path, expect=404)
    await client.call("GET", f"/v1/workflows/tests/{world['test']['id']}", expect=404)
    tests = await client.call("GET", "/v1/workflows/tests", expect=200, workflow_id=workflow_id)
    assert [] == tests["data"]
    status, reasons = await _freshness(client, world["run"]["id"])
    assert "stale" == status
    assert "engine_changed" in reasons


async def test_a_reverted_config_is_fresh_again(client: ApiClient) -> None:
    """Freshness compares fingerprints: putting the config back makes the run fresh."""
    world = await _world(client)
    path = f"/v1/workflows/blocks/{world['block']['id']}"
    await client.call("PATCH", path, {"config": {"model": "m9"}}, expect=200)
    assert ("stale", ["engine_changed"]) == await _freshness(client, world["run"]["id"])
    await client.call("PATCH", path, {"config": {"model": "m1"}}, expect=200)
    assert ("fresh", []) == await _freshness(client, world["run"]["id"])


async def test_saved_test_get_patch_delete(client: ApiClient) -> None:
    """A test's assertion or source change makes its runs stale; the target never changes."""
    world = await _world(client)
    test = world["test"]
    path = f"/v1/workflows/tests/{test['id']}"
    assert test == await client.call("GET", path, expect=200)
    await client.call("GET", path, key=OTHER_API_KEY, expect=404)

    renamed = await client.call("PATCH", path, {"name": "vendor name"}, expect=200)
    assert "vendor name" == renamed["name"]
    assert ("fresh", []) == await _freshness(client, world["run"]["id"])

    assertion = {
        "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
        "condition": {"kind": "equals", "expected": "Globex"},
    }
    changed = await client.call("PATCH", path, {"assertion": assertion}, expect=200)
    assert test["assertion"]["id"] == changed["assertion"]["id"], "the assertion keeps its id"
    assert "Globex" == changed["assertion"]["condition"]["expected"]
    assert ("stale", ["validity_changed"]) == await _freshness(client, world["run"]["id"])

    source = {"type": "manual", "handle_inputs": {"doc": {"type": "json", "data": {"n": 2}}}}
    await client.call("PATCH", path, {"source": source}, expect=200)
    assert ("stale", ["inputs_changed", "validity_changed"]) == await _freshness(
        client, world["run"]["id"]
    )

    refused = await client.call("PATCH", path, {"assertion": None}, expect=422)
    assert ["body", "assertion"] == refused["detail"][0]["loc"]
    target = {"type": "block", "block_id": world["block"]["id"]}
    refused = await client.call("PATCH", path, {"target": target}, expect=422)
    assert ["body", "target"] == refused["detail"][0]["loc"]
    await client.call("PATCH", path, {"source": {"type": "run_step", "run_id": "r"}}, expect=422)
    await client.call("PATCH", path, {"name": "x"}, key=OTHER_API_KEY, expect=404)
    unchanged = await client.call("GET", path, expect=200)
    assert {"doc": {"type": "json", "data": {"n": 2}}} == unchanged["source"]["handle_inputs"]

    await client.call("DELETE", path, key=OTHER_API_KEY, expect=404)
    assert 204 == (await client.http.delete(path, headers=_auth())).status
    await client.call("GET", path, expect=404)
    await client.call("PATCH", path, {"name": "x"}, expect=404)
    run = await client.call("GET", f"{RUNS}/{world['run']['id']}", expect=200)
    assert 1 == run["total_tests"]
    results = await client.call(
        "GET", "/v1/workflows/tests/results", expect=200, run_id=world["run"]["id"]
    )
    assert test["id"] == results["data"][0]["test_id"]
