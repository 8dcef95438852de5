"""The registry as the SDK calls it: list filters and sort keys, `parent_id`, and the
404 `route_not_found` of the SDK's routes this service does not serve."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import ApiClient

WORKFLOWS = "/v1/workflows"


async def test_workflows_list_honours_project_id_and_sort_by(client: ApiClient) -> None:
    """`project_id` keeps one project's workflows; `sort_by=updated_at` (what the SDK sends)
    orders by the last change, `created_at` by creation; anything else is a 422."""
    first = await client.call("POST", WORKFLOWS, {"name": "a", "project_id": "proj_1"}, expect=201)
    second = await client.call("POST", WORKFLOWS, {"name": "b", "project_id": "proj_2"}, expect=201)
    third = await client.call("POST", WORKFLOWS, {"name": "c", "project_id": "proj_1"}, expect=201)
    await asyncio.sleep(0.01)
    await client.call("PATCH", f"{WORKFLOWS}/{first['id']}", {"name": "a2"}, expect=200)

    def ids(page: dict[str, object]) -> list[str]:
        return [item["id"] for item in page["data"]]  # type: ignore[attr-defined,index]

    in_project = await client.call("GET", WORKFLOWS, expect=200, project_id="proj_1")
    assert [third["id"], first["id"]] == ids(in_project)
    assert all("proj_1" == item["project_id"] for item in in_project["data"])
    assert [second["id"]] == ids(
        await client.call("GET", WORKFLOWS, expect=200, project_id="proj_2")
    )
    assert [] == ids(await client.call("GET", WORKFLOWS, expect=200, project_id="proj_none"))

    by_update = await client.call("GET", WORKFLOWS, expect=200, sort_by="updated_at")
    assert [first["id"], third["id"], second["id"]] == ids(by_update)
    by_creation = await client.call("GET", WORKFLOWS, expect=200, sort_by="created_at")
    assert [third["id"], second["id"], first["id"]] == ids(by_creation)
    assert ids(by_creation) == ids(await client.call("GET", WORKFLOWS, expect=200))
    oldest_update = await client.call(
        "GET", WORKFLOWS, expect=200, sort_by="updated_at", order="asc", limit=2
    )
    assert [second["id"], third["id"]] == ids(oldest_update)
    rest = await client.call(
        "GET",
        WORKFLOWS,
        expect=200,
        sort_by="updated_at",
        order="asc",
        after=oldest_update["list_metadata"]["after"],
    )
    assert [first["id"]] == ids(rest)
    refused = await client.call("GET", WORKFLOWS, expect=422, sort_by="name")
    assert ["query", "sort_by"] == refused["detail"][0]["loc"]


async def test_a_block_keeps_its_parent_id(client: ApiClient) -> None:
    """`parent_id` sent at creation is answered, read and listed as sent (null if absent)."""
    workflow = await client.workflow()
    loop = await client.block(workflow["id"], type="for_each")
    child = await client.block(workflow["id"], type="extract", parent_id=loop["id"])
    assert loop["id"] == child["parent_id"]
    assert loop["parent_id"] is None
    assert child == await client.call("GET", f"{WORKFLOWS}/blocks/{child['id']}", expect=200)
    listed = await client.call("GET", f"{WORKFLOWS}/blocks", expect=200, workflow_id=workflow["id"])
    assert {loop["id"]: None, child["id"]: loop["id"]} == {
        block["id"]: block["parent_id"] for block in listed["data"]
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/workflows/versions"),
        ("GET", "/v1/workflows/runs"),
        ("GET", "/v1/workflows/steps"),
        ("GET", "/v1/workflows/edges"),
        ("POST", "/v1/workflows/edges"),
        ("GET", "/v1/workflows/spec"),
        ("POST", "/v1/workflows/publish"),
        ("DELETE", "/v1/workflows/experiments"),
        ("PATCH", "/v1/workflows/reviews"),
        ("GET", "/v1/workflows/{workflow_id}/versions"),
        ("POST", "/v1/workflows/{workflow_id}/publish"),
        ("GET", "/v1/workflows/{workflow_id}/diff"),
        ("GET", "/v1/workflows/{workflow_id}/spec"),
        ("POST", "/v1/workflows/{workflow_id}/discard-draft"),
        ("GET", "/v1/workflows/runs/run_1/steps"),
        ("GET", "/v1/workflows/tests/runs/wftestrun_1/steps"),
        ("GET", "/v1/workflows/evals/results/x/y"),
    ],
)
async def test_an_unknown_path_under_workflows_is_route_not_found(
    client: ApiClient, method: str, path: str
) -> None:
    """The SDK's routes that are not served here answer 404 `route_not_found` naming the
    method and path, never "Workflow not found: versions" nor a 405."""
    workflow = await client.workflow()
    target = path.replace("{workflow_id}", workflow["id"])
    answer = await client.call(method, target, {} if method != "GET" else None, expect=404)
    detail = answer["detail"]
    assert "route_not_found" == detail["code"]
    assert f"Route not found: {method} {target}" == detail["message"]
    assert {"method": method, "path": target} == detail["details"]


async def test_real_ids_and_fixed_paths_keep_their_own_answers(client: ApiClient) -> None:
    """An unknown workflow id is still `workflow_not_found`; a fixed path's other method is
    still its 405; a served route still answers."""
    missing = await client.call("GET", f"{WORKFLOWS}/wf_missing", expect=404)
    assert "workflow_not_found" == missing["detail"]["code"]
    await client.call("PATCH", f"{WORKFLOWS}/blocks", {}, expect=405)
    await client.call("GET", f"{WORKFLOWS}/evals/runs", expect=200)
