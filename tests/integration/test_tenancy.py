"""Another organisation's ids are never found: every route with an id answers 404."""

from __future__ import annotations

from typing import Any

from tests.helpers import OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"


async def test_every_route_with_an_id_answers_404_to_another_organisation(
    client: ApiClient,
) -> None:
    """Each (method, path) that names a resource of organisation A is 404 for B's key."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    test = await client.test(workflow["id"], block["id"])
    run = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    results = await client.call("GET", "/v1/workflows/tests/results", run_id=run["id"])
    ids = {
        "workflow_id": workflow["id"],
        "block_id": block["id"],
        "test_id": test["id"],
        "run_id": run["id"],
        "result_id": results["data"][0]["id"],
    }
    bodies: dict[tuple[str, str], Any] = {
        ("PATCH", "/v1/workflows/{workflow_id}"): {"name": "x"},
        ("PATCH", "/v1/workflows/blocks/{block_id}"): {"label": "x"},
        ("PATCH", "/v1/workflows/tests/{test_id}"): {"name": "x"},
    }
    checked: set[tuple[str, str]] = set()
    for route in client.http.server.app.router.routes():
        template = route.resource.canonical if route.resource is not None else ""
        if not template.startswith("/v1/") or "{" not in template or route.method == "HEAD":
            continue
        path = template.format(**ids)
        body = bodies.get((route.method, template))
        error = await client.call(route.method, path, body, key=OTHER_API_KEY, expect=404)
        assert "detail" in error
        checked.add((route.method, template))
    assert {
        ("GET", "/v1/workflows/{workflow_id}"),
        ("PATCH", "/v1/workflows/{workflow_id}"),
        ("DELETE", "/v1/workflows/{workflow_id}"),
        ("GET", "/v1/workflows/blocks/{block_id}"),
        ("PATCH", "/v1/workflows/blocks/{block_id}"),
        ("DELETE", "/v1/workflows/blocks/{block_id}"),
        ("GET", "/v1/workflows/tests/{test_id}"),
        ("PATCH", "/v1/workflows/tests/{test_id}"),
        ("DELETE", "/v1/workflows/tests/{test_id}"),
        ("GET", "/v1/workflows/tests/runs/{run_id}"),
        ("POST", "/v1/workflows/tests/runs/{run_id}/cancel"),
        ("GET", "/v1/workflows/tests/results/{result_id}"),
    } <= checked
    # Ids in query strings and bodies, too.
    for path, params in (
        ("/v1/workflows/tests", {"workflow_id": workflow["id"]}),
        ("/v1/workflows/blocks", {"workflow_id": workflow["id"]}),
        ("/v1/workflows/tests/results", {"run_id": run["id"]}),
    ):
        await client.call("GET", path, key=OTHER_API_KEY, expect=404, **params)
    for path, body in (
        (RUNS, {"workflow_id": workflow["id"]}),
        ("/v1/workflows/blocks", {"workflow_id": workflow["id"], "type": "extract"}),
        (
            "/v1/workflows/tests",
            {
                "workflow_id": workflow["id"],
                "target": {"type": "block", "block_id": block["id"]},
                "source": {"type": "manual"},
                "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
            },
        ),
    ):
        await client.call("POST", path, body, key=OTHER_API_KEY, expect=404)
    listed = await client.call("GET", RUNS, key=OTHER_API_KEY, expect=200)
    assert [] == listed["data"]
    # And nothing of A changed.
    assert (
        workflow["name"]
        == (await client.call("GET", f"/v1/workflows/{workflow['id']}", expect=200))["name"]
    )
    assert "pending" == (await client.call("GET", f"{RUNS}/{run['id']}"))["lifecycle"]["status"]
