"""Tenancy: another organisation's ids are never found, never listed, never changed.

The matrix is derived from the app's router and /openapi.json: a route with an
id parameter that has no probe here fails the test, so a new route cannot be
added without being checked.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

import asyncpg

from service.config import Config
from service.http.handlers.common import POOL
from service.ops import keys
from service.ops.keys import KeyLookup
from tests.helpers import API_KEY, OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"
RESULTS = "/v1/workflows/tests/results"
SSE = {"Accept": "text/event-stream"}

# (method, route template) -> the probes of it: (body, extra headers).
PROBES: dict[tuple[str, str], list[tuple[Any, dict[str, str]]]] = {
    ("GET", "/v1/workflows/{workflow_id}"): [(None, {})],
    ("PATCH", "/v1/workflows/{workflow_id}"): [({"name": "taken"}, {})],
    ("DELETE", "/v1/workflows/{workflow_id}"): [(None, {})],
    ("GET", "/v1/workflows/blocks/{block_id}"): [(None, {})],
    ("PATCH", "/v1/workflows/blocks/{block_id}"): [({"label": "taken"}, {})],
    ("DELETE", "/v1/workflows/blocks/{block_id}"): [(None, {})],
    ("GET", "/v1/workflows/tests/{test_id}"): [(None, {})],
    ("PATCH", "/v1/workflows/tests/{test_id}"): [({"name": "taken"}, {})],
    ("DELETE", "/v1/workflows/tests/{test_id}"): [(None, {})],
    ("GET", "/v1/workflows/tests/runs/{run_id}"): [(None, {})],
    ("POST", "/v1/workflows/tests/runs/{run_id}/cancel"): [(None, {}), ({}, {})],
    # The event feed: JSON pages, and live SSE (refused before any stream starts).
    ("GET", "/v1/workflows/tests/runs/{run_id}/events"): [(None, {}), (None, SSE)],
    ("GET", "/v1/workflows/tests/results/{result_id}"): [(None, {})],
}
# The same routes under SDK 0.0.160's names (`evals`, `{eval_id}`).
PROBES.update(
    {
        (method, template.replace("/tests", "/evals").replace("{test_id}", "{eval_id}")): probes
        for (method, template), probes in list(PROBES.items())
        if template.startswith("/v1/workflows/tests")
    }
)


def _id_routes_of_router(client: ApiClient) -> set[tuple[str, str]]:
    found = set()
    for route in client.http.server.app.router.routes():
        template = route.resource.canonical if route.resource is not None else ""
        if template.startswith("/v1/") and "{" in template:
            found.add((route.method, template))
    return found


async def _id_routes_of_openapi(client: ApiClient) -> set[tuple[str, str]]:
    document = await client.call("GET", "/openapi.json", key=None, expect=200)
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        if path.startswith("/v1/") and "{" in path
        for method in operations
        if method in ("get", "put", "post", "patch", "delete")
    }


async def _organisation_a(client: ApiClient, secret: str) -> dict[str, Any]:
    """A workflow, block, saved test, run and result of organisation A, named with `secret`."""
    workflow = await client.workflow(name=f"workflow {secret}")
    block = await client.block(workflow["id"], label=f"block {secret}")
    test = await client.test(workflow["id"], block["id"], name=f"test {secret}")
    run = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    results = await client.call("GET", RESULTS, run_id=run["id"], expect=200)
    return {
        "workflow_id": workflow["id"],
        "block_id": block["id"],
        "test_id": test["id"],
        "eval_id": test["id"],
        "run_id": run["id"],
        "result_id": results["data"][0]["id"],
    }


async def _as_other(
    client: ApiClient, method: str, path: str, body: Any, headers: dict[str, str], **params: Any
) -> tuple[int, str]:
    response = await client.http.request(
        method,
        path,
        json=body,
        params=params or None,
        headers={"Authorization": f"Bearer {OTHER_API_KEY}", **headers},
    )
    return response.status, await response.text()


async def test_every_route_with_an_id_answers_404_to_another_organisation(
    client: ApiClient,
) -> None:
    """Every (method, path) naming A's resource is 404 for B, with none of A's data."""
    secret = f"secret-{uuid.uuid4().hex}"
    ids = await _organisation_a(client, secret)
    router = _id_routes_of_router(client)
    without_head = {(m, t) for m, t in router if m != "HEAD"}
    # The matrix is complete: every id route of the router and of the OpenAPI
    # document has probes, and there are no probes of routes that do not exist.
    assert without_head == set(PROBES), "add probes for new routes with an id"
    assert await _id_routes_of_openapi(client) == set(PROBES)
    probed: set[tuple[str, str]] = set()
    for method, template in sorted(router):
        path = template.format(**ids)
        source = "GET" if method == "HEAD" else method
        for body, headers in PROBES[(source, template)]:
            status, text = await _as_other(client, method, path, body, headers)
            assert 404 == status, (method, template, headers, text)
            assert secret not in text
            if method != "HEAD":
                assert "not_found" in text
            probed.add((method, template))
    assert router == probed
    await _nothing_of_a_changed(client, ids, secret)


async def test_ids_in_queries_and_bodies_are_404_or_filter_to_nothing(client: ApiClient) -> None:
    """Filters with A's ids give B nothing; creating against A's workflow, block or test is 404."""
    secret = f"secret-{uuid.uuid4().hex}"
    ids = await _organisation_a(client, secret)
    own = await client.call("POST", "/v1/workflows", {"name": "B's"}, key=OTHER_API_KEY, expect=201)
    await client.call(
        "POST",
        "/v1/workflows/blocks",
        {"workflow_id": own["id"], "type": "extract"},
        key=OTHER_API_KEY,
        expect=201,
    )

    # Lists scoped by a parent id: that parent is A's, so 404.
    for path, params in (
        ("/v1/workflows/tests", {"workflow_id": ids["workflow_id"]}),
        ("/v1/workflows/blocks", {"workflow_id": ids["workflow_id"]}),
        (RESULTS, {"run_id": ids["run_id"]}),
    ):
        status, text = await _as_other(client, "GET", path, None, {}, **params)
        assert 404 == status, (path, text)
        assert secret not in text
    # Filters: empty pages, never A's rows.
    for path, params in (
        (RUNS, {}),
        (RUNS, {"workflow_id": ids["workflow_id"]}),
        (RUNS, {"test_id": ids["test_id"]}),
        (RUNS, {"target_block_id": ids["block_id"]}),
        (RUNS, {"workflow_id": own["id"], "target_block_id": ids["block_id"]}),
        ("/v1/workflows/tests", {"workflow_id": own["id"], "target_block_id": ids["block_id"]}),
        ("/v1/workflows/blocks", {"workflow_id": own["id"]}),
        ("/v1/workflows", {}),
    ):
        status, text = await _as_other(client, "GET", path, None, {}, **params)
        assert 200 == status, (path, params, text)
        assert secret not in text
        for value in ids.values():
            assert value not in text, (path, params)
    listed = await client.call("GET", "/v1/workflows", key=OTHER_API_KEY, expect=200)
    assert [own["id"]] == [w["id"] for w in listed["data"]]

    # Creation against A's resources.
    test_body = {
        "target": {"type": "block", "block_id": ids["block_id"]},
        "source": {"type": "manual"},
        "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
    }
    for path, body in (
        (RUNS, {"workflow_id": ids["workflow_id"]}),
        (RUNS, {"workflow_id": ids["workflow_id"], "scope": {"type": "single", "test_id": "x"}}),
        (RUNS, {"workflow_id": own["id"], "scope": {"type": "block", "block_id": ids["block_id"]}}),
        (RUNS, {"workflow_id": own["id"], "scope": {"type": "single", "test_id": ids["test_id"]}}),
        ("/v1/workflows/blocks", {"workflow_id": ids["workflow_id"], "type": "extract"}),
        ("/v1/workflows/tests", {"workflow_id": ids["workflow_id"], **test_body}),
        ("/v1/workflows/tests", {"workflow_id": own["id"], **test_body}),  # A's block
    ):
        status, text = await _as_other(client, "POST", path, body, {})
        assert 404 == status, (path, body, text)
        assert secret not in text
    # Nothing was created for B either.
    tests = await client.call(
        "GET", "/v1/workflows/tests", key=OTHER_API_KEY, expect=200, workflow_id=own["id"]
    )
    assert [] == tests["data"]
    runs = await client.call("GET", RUNS, key=OTHER_API_KEY, expect=200)
    assert [] == runs["data"]
    await _nothing_of_a_changed(client, ids, secret)


async def test_idempotency_keys_are_per_organisation(client: ApiClient) -> None:
    """B sending A's Idempotency-Key and body gets its own new resource, not A's response."""
    key = f"idem-{uuid.uuid4().hex}"
    body = {"name": "same body"}
    first = await client.http.post(
        "/v1/workflows",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key},
    )
    assert 201 == first.status
    a_id = (await first.json())["id"]
    second = await client.http.post(
        "/v1/workflows",
        json=body,
        headers={"Authorization": f"Bearer {OTHER_API_KEY}", "Idempotency-Key": key},
    )
    assert 201 == second.status
    assert "Idempotent-Replayed" not in second.headers
    assert a_id != (await second.json())["id"]


async def test_a_revoked_key_is_refused_within_the_key_cache_bound(client: ApiClient) -> None:
    """Revocation takes effect on every request after KEY_CACHE_S (1 s by default).

    A valid key is remembered that long, to save a query per request; never longer.
    """
    pool = client.http.server.app[POOL]
    async with pool.acquire() as conn:
        key, key_id, _ = await keys.create_key(conn, new_organisation="short-lived")
    for header in ("bearer", "api-key"):
        await client.call("GET", "/v1/workflows", key=key, header=header, expect=200)
    assert await keys.revoke_key(pool, key_id)
    revoked_at = time.monotonic()
    while True:
        response = await client.http.get(
            "/v1/workflows", headers={"Authorization": f"Bearer {key}"}
        )
        if response.status == 401:
            break
        assert 200 == response.status
        assert time.monotonic() - revoked_at < Config().key_cache_s + 0.5, "still accepted"
        await asyncio.sleep(0.05)
    for header in ("bearer", "api-key"):
        error = await client.call("GET", "/v1/workflows", key=key, header=header, expect=401)
        assert "unauthorized" == error["detail"]["code"]
    # The other keys are unaffected.
    await client.call("GET", "/v1/workflows", expect=200)
    assert not await keys.revoke_key(pool, key_id)  # already revoked


async def test_without_the_key_cache_a_revoked_key_is_refused_at_once(pool: asyncpg.Pool) -> None:
    """KEY_CACHE_S=0: the very next lookup refuses it; a valid key is looked up each time."""
    lookup = KeyLookup(pool, cache_s=0)
    async with pool.acquire() as conn:
        key, key_id, _ = await keys.create_key(conn, new_organisation="uncached")
    assert (await lookup.resolve(key)) is not None
    assert await keys.revoke_key(pool, key_id)
    assert await lookup.resolve(key) is None


async def test_the_key_cache_remembers_valid_keys_only(pool: asyncpg.Pool) -> None:
    """Within KEY_CACHE_S a valid key costs no query; an unknown key is never remembered."""
    lookup = KeyLookup(pool, cache_s=60)
    async with pool.acquire() as conn:
        key, key_id, organisation_id = await keys.create_key(conn, new_organisation="cached")
    first = await lookup.resolve(key)
    assert first is not None
    assert organisation_id == first.organisation_id
    assert await keys.revoke_key(pool, key_id)
    remembered = await lookup.resolve(key)  # no query: the cache answers
    assert remembered is first
    assert await lookup.resolve("rtk_unknown") is None
    async with pool.acquire() as conn:
        other, _, _ = await keys.create_key(conn, organisation_id=organisation_id)
    assert await lookup.resolve(other) is not None
    assert await KeyLookup(pool, cache_s=60).resolve(key) is None  # a fresh process refuses it


async def test_keys_are_stored_only_as_hashes(client: ApiClient) -> None:
    """No column of api_keys holds the key itself; the stored form is its SHA-256."""
    pool = client.http.server.app[POOL]
    rows = await pool.fetch("SELECT * FROM api_keys")
    assert rows
    for row in rows:
        for value in row.values():
            text = value.hex() if isinstance(value, bytes) else str(value)
            assert API_KEY not in text
            assert OTHER_API_KEY not in text
    hashes = {row["key_hash"] for row in rows}
    assert keys.hash_key(API_KEY) in hashes
    assert re.fullmatch(r"[0-9a-f]{64}", keys.hash_key(API_KEY).hex())


async def _nothing_of_a_changed(client: ApiClient, ids: dict[str, Any], secret: str) -> None:
    workflow = await client.call("GET", f"/v1/workflows/{ids['workflow_id']}", expect=200)
    assert f"workflow {secret}" == workflow["name"]
    block = await client.call("GET", f"/v1/workflows/blocks/{ids['block_id']}", expect=200)
    assert f"block {secret}" == block["label"]
    test = await client.call("GET", f"/v1/workflows/tests/{ids['test_id']}", expect=200)
    assert f"test {secret}" == test["name"]
    run = await client.call("GET", f"{RUNS}/{ids['run_id']}", expect=200)
    assert "pending" == run["lifecycle"]["status"]
    await client.call("GET", f"{RESULTS}/{ids['result_id']}", expect=200)
