"""The event store's refusals reach a client as 409 conflicts, never as a 500 (no database)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from events.errors import EventStoreError, IdempotencyConflictError, StaleTransactionError
from service.http.middleware import edge

REFUSALS: dict[str, EventStoreError] = {
    "stale": StaleTransactionError(
        "run-x", 3, "Stale transaction: stream run-x was last appended by transaction 9"
    ),
    "idempotency": IdempotencyConflictError(
        "Idempotency conflict: event 0a (number 1 of the append) is stored with another"
        " payload (Stream: run-x, Stored in: run-x, Version: 2)"
    ),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
async def test_a_store_refusal_is_a_409_naming_the_stream(kind: str) -> None:
    """StaleTransactionError and IdempotencyConflictError are 409 `conflict`."""

    async def refuse(request: web.Request) -> web.Response:
        raise REFUSALS[kind]

    app = web.Application(middlewares=[edge])
    app.router.add_get("/refused", refuse)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        response = await client.get("/refused")
        assert 409 == response.status
        detail = (await response.json())["detail"]
        assert "conflict" == detail["code"]
        assert "run-x" in detail["message"]
    finally:
        await client.close()
