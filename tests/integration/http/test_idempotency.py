"""Idempotency-Key on POST: a retry returns the first response and creates nothing."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from service.http.handlers.common import POOL
from service.ops.keys import hash_key
from tests.helpers import API_KEY, OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"


async def _post(
    client: ApiClient, path: str, body: Any, key: str | None, api_key: str = API_KEY
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Authorization": f"Bearer {api_key}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await client.http.post(path, json=body, headers=headers)
    return response.status, await response.json(), dict(response.headers)


async def _count(client: ApiClient, table: str) -> int:
    return int(await client.http.server.app[POOL].fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_retried_create_returns_the_first_response(client: ApiClient) -> None:
    """Same key, same body: the same workflow (same id), and no second one."""
    first = await _post(client, "/v1/workflows", {"name": "Invoices"}, "k-1")
    again = await _post(client, "/v1/workflows", {"name": "Invoices"}, "k-1")
    assert 201 == first[0] == again[0]
    assert first[1] == again[1]
    assert "true" == again[2].get("Idempotent-Replayed")
    assert 1 == await _count(client, "workflows")


async def test_a_retried_run_creation_creates_one_run(client: ApiClient) -> None:
    """Retrying POST /runs with its key creates one run and one run.created event."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    await client.test(workflow["id"], block["id"])
    body = {"workflow_id": workflow["id"]}
    answers = [await _post(client, RUNS, body, "run-key") for _ in range(3)]
    assert {202} == {status for status, _, _ in answers}
    assert 1 == len({answer["id"] for _, answer, _ in answers})
    assert 1 == await _count(client, "test_runs")
    assert 1 == await _count(client, "events")


async def test_the_same_key_with_another_body_is_409(client: ApiClient) -> None:
    """A key reused for a different request is a 409 and creates nothing."""
    await _post(client, "/v1/workflows", {"name": "A"}, "k-2")
    status, error, _ = await _post(client, "/v1/workflows", {"name": "B"}, "k-2")
    assert 409 == status
    assert "idempotency_key_reused" == error["detail"]["code"]
    assert 1 == await _count(client, "workflows")


async def test_keys_belong_to_one_organisation(client: ApiClient) -> None:
    """Another organisation's identical key is its own: it creates its own workflow."""
    mine = await _post(client, "/v1/workflows", {"name": "A"}, "shared")
    theirs = await _post(client, "/v1/workflows", {"name": "A"}, "shared", OTHER_API_KEY)
    assert 201 == theirs[0]
    assert mine[1]["id"] != theirs[1]["id"]


async def test_concurrent_requests_with_one_key_create_once(client: ApiClient) -> None:
    """Racing requests with one key: one creates; the others replay it or are told to retry."""
    answers = await asyncio.gather(
        *(_post(client, "/v1/workflows", {"name": "race"}, "k-race") for _ in range(8))
    )
    assert 1 == await _count(client, "workflows")
    created = {answer["id"] for status, answer, _ in answers if status == 201}
    assert 1 == len(created)
    for status, answer, _ in answers:
        assert status in (201, 409)
        if status == 409:
            assert "idempotency_key_in_use" == answer["detail"]["code"]


async def test_errors_are_replayed_and_bad_keys_refused(client: ApiClient) -> None:
    """A 4xx answer is kept like any other; an empty or huge key is a 400."""
    first = await _post(client, RUNS, {"workflow_id": "wf_nope"}, "k-404")
    again = await _post(client, RUNS, {"workflow_id": "wf_nope"}, "k-404")
    assert 404 == first[0] == again[0]
    for bad in ("", "x" * 300):
        status, error, _ = await _post(client, "/v1/workflows", {"name": "x"}, bad)
        assert 400 == status
        assert "invalid_idempotency_key" == error["detail"]["code"]
    assert 0 == await _count(client, "workflows")


async def test_without_a_key_every_post_creates(client: ApiClient) -> None:
    """No key, no deduplication: two POSTs, two workflows."""
    await _post(client, "/v1/workflows", {"name": "x"}, None)
    await _post(client, "/v1/workflows", {"name": "x"}, None)
    assert 2 == await _count(client, "workflows")


async def test_a_key_expires_after_a_day(client: ApiClient) -> None:
    """After 24 hours the key is free again: the same request creates anew."""
    await _post(client, "/v1/workflows", {"name": "x"}, "k-old")
    await client.http.server.app[POOL].execute(
        "UPDATE idempotency_keys SET created_at = now() - interval '25 hours'"
    )
    status, _, headers = await _post(client, "/v1/workflows", {"name": "x"}, "k-old")
    assert 201 == status
    assert "Idempotent-Replayed" not in headers
    assert 2 == await _count(client, "workflows")


async def test_a_claim_never_answered_is_taken_over_after_a_minute(client: ApiClient) -> None:
    """A key whose first request died before its response was stored is not stuck for a day.

    While the claim is fresh a retry is told to wait (409); once it is older
    than a minute the retry runs the request.
    """
    pool = client.http.server.app[POOL]
    organisation_id = await pool.fetchval(
        "SELECT organisation_id FROM api_keys WHERE key_hash = $1", hash_key(API_KEY)
    )
    body = b'{"name":"x"}'
    digest = hashlib.sha256(b"/v1/workflows\n" + body).digest()
    await pool.execute(
        "INSERT INTO idempotency_keys (organisation_id, key, request_hash) VALUES ($1, $2, $3)",
        organisation_id,
        "k-dead",
        digest,
    )
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": "k-dead"}
    headers["Content-Type"] = "application/json"
    waiting = await client.http.post("/v1/workflows", data=body, headers=headers)
    assert 409 == waiting.status
    assert "idempotency_key_in_use" == (await waiting.json())["detail"]["code"]
    await pool.execute("UPDATE idempotency_keys SET created_at = now() - interval '61 seconds'")
    taken = await client.http.post("/v1/workflows", data=body, headers=headers)
    assert 201 == taken.status
    replayed = await client.http.post("/v1/workflows", data=body, headers=headers)
    assert "true" == replayed.headers.get("Idempotent-Replayed")
    assert (await taken.json())["id"] == (await replayed.json())["id"]
    assert 1 == await _count(client, "workflows")
