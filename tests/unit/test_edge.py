"""The edge middleware turns every failure into the SPEC's JSON, with a request id (no database)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from events.errors import ConcurrencyError
from service.http.middleware import edge


async def _lost_race(request: web.Request) -> web.Response:
    raise ConcurrencyError(
        "run-x", 3, "Wrong expected version: 3 (Stream: run-x, Stream Version: 4)"
    )


async def _crash(request: web.Request) -> web.Response:
    msg = "secret internals"
    raise RuntimeError(msg)


async def _client() -> TestClient[web.Request, web.Application]:
    app = web.Application(middlewares=[edge])
    app.router.add_get("/race", _lost_race)
    app.router.add_get("/crash", _crash)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_a_lost_write_race_is_409() -> None:
    """A ConcurrencyError that escapes a command is a 409 conflict naming the stream."""
    client = await _client()
    try:
        response = await client.get("/race")
        assert 409 == response.status
        detail = (await response.json())["detail"]
        assert "conflict" == detail["code"]
        assert "run-x" in detail["message"]
        assert response.headers["X-Request-Id"]
    finally:
        await client.close()


async def test_an_unexpected_error_is_a_json_500_without_internals() -> None:
    """A bug answers a JSON 500 that shows no stack trace or message, with a request id."""
    client = await _client()
    try:
        response = await client.get("/crash")
        assert 500 == response.status
        body = await response.text()
        assert "secret internals" not in body
        assert "Traceback" not in body
        assert "internal_error" == (await response.json())["detail"]["code"]
        assert response.headers["X-Request-Id"]
    finally:
        await client.close()
