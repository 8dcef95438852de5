"""Malformed, odd and oversized requests get a 4xx in the SPEC's format and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import API_KEY, ApiClient

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def _stored(client: ApiClient) -> tuple[int, int]:
    from service.handlers.common import POOL

    pool = client.http.server.app[POOL]
    return (
        await pool.fetchval("SELECT count(*) FROM workflows"),
        await pool.fetchval("SELECT count(*) FROM events"),
    )


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/workflows", b"[" * 5000 + b"]" * 5000),
        ("/v1/workflows", b'{"name": "a\\u0000b"}'),
        ("/v1/workflows", b'{"name": 1e400}'),
        ("/v1/workflows", b'{"name": "\xc3\x28"}'),
        ("/v1/workflows/tests/runs", b'{"workflow_id": "wf_\\u0000"}'),
        ("/v1/workflows/tests/runs", b'{"workflow_id": "' + b"x" * 5000 + b'"}'),
        (
            "/v1/workflows/blocks",
            b'{"workflow_id": "wf_x", "type": "extract", "position_x": 1e999}',
        ),
    ],
)
async def test_bad_bodies_are_4xx_and_change_nothing(
    client: ApiClient, path: str, raw: bytes
) -> None:
    """Deep nesting, NUL characters, invalid UTF-8, huge numbers and ids are refused cleanly."""
    before = await _stored(client)
    response = await client.http.post(path, data=raw, headers=AUTH)
    assert response.status in (404, 413, 422), await response.text()
    assert "detail" in await response.json()
    assert before == await _stored(client)


async def test_a_nul_inside_handle_data_is_refused(client: ApiClient) -> None:
    """A NUL character deep in a test's handle data is a 422, not a database error."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    body: dict[str, Any] = {
        "workflow_id": workflow["id"],
        "target": {"type": "block", "block_id": block["id"]},
        "source": {"type": "manual", "handle_inputs": {"h": {"type": "json", "data": "a\x00b"}}},
        "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
    }
    await client.call("POST", "/v1/workflows/tests", body, expect=422)


@pytest.mark.parametrize(
    "run_id", ["%00", "x" * 300, "wftestrun_'; DROP TABLE events; --", "%E2%80%AE", "..%2F.."]
)
async def test_odd_ids_in_paths_are_404(client: ApiClient, run_id: str) -> None:
    """Ids that cannot exist answer 404 in the SPEC's format."""
    response = await client.http.get(f"/v1/workflows/tests/runs/{run_id}", headers=AUTH)
    assert 404 == response.status
    assert "detail" in await response.json()


async def test_odd_query_values_are_4xx(client: ApiClient) -> None:
    """SQL metacharacters and NULs in filters are data, never SQL, and never a 500."""
    for value in ("' OR 1=1 --", "\x00", "x" * 4000):
        response = await client.http.get(
            "/v1/workflows/tests", params={"workflow_id": value}, headers=AUTH
        )
        assert response.status in (404, 422), await response.text()


async def test_a_body_over_the_limit_is_413(client: ApiClient) -> None:
    """A body larger than MAX_BODY_BYTES is refused with 413 in the SPEC's format."""
    raw = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = await client.http.post("/v1/workflows", data=raw, headers=AUTH)
    assert 413 == response.status
    assert "request_too_large" == (await response.json())["detail"]["code"]


async def test_wrong_method_is_405_json(client: ApiClient) -> None:
    """A known path with a method it does not serve is a JSON 405."""
    response = await client.http.put("/v1/workflows/tests/runs", headers=AUTH)
    assert 405 == response.status
    assert "method_not_allowed" == (await response.json())["detail"]["code"]
