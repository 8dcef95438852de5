"""Hostile transports, on raw sockets: bodies that do not decode, clients that leave or stall.

Each case checks the answer, that nothing was written, and that the server
still answers `/healthz` afterwards.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientSession, web
from structlog.testing import capture_logs

from service.config import Config
from service.db import DatabaseUnreachableError
from service.http import availability
from service.http.app import create_app
from tests.helpers import API_KEY, ApiClient
from tests.integration.http.test_hostile_input import BODY_ROUTES, _snapshot
from tests.integration.http.test_metrics import Samples

AUTH_LINE = f"Authorization: Bearer {API_KEY}\r\n".encode()


def _head(method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers]
    return ("\r\n".join(lines) + "\r\n").encode() + AUTH_LINE + b"\r\n"


class Edge:
    """A server on 127.0.0.1 started as `python -m service serve` starts it (an AppRunner).

    Not aiohttp's TestServer: that one cancels a handler whose client leaves,
    which the service's runner does not do, and a test of leaving clients must
    see what production sees.
    """

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port

    async def get(self, path: str) -> tuple[int, str]:
        async with (
            ClientSession() as session,
            session.get(f"http://{self.host}:{self.port}{path}") as response,
        ):
            return response.status, await response.text()


async def _serve(pool: asyncpg.Pool, config: Config) -> AsyncIterator[Edge]:
    app = create_app(pool, config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Edge(app, host, port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def edge(pool: asyncpg.Pool, client: ApiClient) -> AsyncIterator[Edge]:
    """The service's app with its default settings, on the `client` fixture's database."""
    async for server in _serve(pool, Config()):
        yield server


@pytest.fixture
async def impatient(pool: asyncpg.Pool, client: ApiClient) -> AsyncIterator[Edge]:
    """The same app whose connections get 1 s for a request head and 1 s for a body."""
    async for server in _serve(pool, Config(http_headers_timeout_s=1.0, http_body_timeout_s=1.0)):
        yield server


async def _exchange(
    server: Edge, raw: bytes, *, half_close: bool = False, wait_s: float = 10
) -> bytes:
    """Send `raw` as it is; everything the server says until it closes (or `wait_s`)."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(raw)
        await writer.drain()
        if half_close:
            writer.write_eof()
        chunks = []
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> Any:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


async def _still_serving(server: Edge) -> None:
    assert 200 == (await server.get("/healthz"))[0]


async def _scrape(server: Edge) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    status, text = await server.get("/metrics")
    assert 200 == status, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


async def _send_encoded(
    server: Edge, method: str, path: str, data: bytes, encoding: str, *extra: str
) -> bytes:
    head = _head(
        method,
        path,
        "Content-Type: application/json",
        f"Content-Encoding: {encoding}",
        f"Content-Length: {len(data)}",
        "Connection: close",
        *extra,
    )
    return await _exchange(server, head + data)


@pytest.mark.parametrize("route", BODY_ROUTES, ids=lambda route: f"{route[0]} {route[1]}")
@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotency-key"])
async def test_bodies_that_do_not_decode_are_400_or_415_and_change_nothing(
    client: ApiClient, edge: Edge, route: tuple[str, str, Any], idempotent: bool
) -> None:
    """Garbage under gzip or deflate is a 400; an encoding we do not decode is a 415."""
    method, path, payload = route
    before = await _snapshot(client)
    extra = ("Idempotency-Key: transport-case",) if idempotent else ()
    cases = [
        ("gzip", b"not gzip", 400),
        ("deflate", b"not deflate either", 400),
        ("compress", _body(payload), 415),
        ("br", _body(payload), 415),
        ("made-up", _body(payload), 415),
    ]
    for encoding, data, status in cases:
        answer = await _send_encoded(edge, method, path, data, encoding, *extra)
        assert status == _status(answer), answer[:400]
        detail = _json_body(answer)["detail"]
        expected_code = "invalid_body_encoding" if status == 400 else "unsupported_content_encoding"
        assert expected_code == detail["code"], detail
    # gzip cut short, in its data or only in its trailer (CRC and length): the
    # stream does not end, so it does not decode, even where the JSON would.
    whole = gzip.compress(_body(payload))
    for cut in (whole[:-12], whole[:-8], whole[:-1]):
        answer = await _send_encoded(edge, method, path, cut, "gzip", *extra)
        assert 400 == _status(answer), answer[:400]
        assert "invalid_body_encoding" == _json_body(answer)["detail"]["code"]
    assert before == await _snapshot(client)
    await _still_serving(edge)


async def test_a_body_that_decodes_is_served(edge: Edge) -> None:
    """gzip and deflate bodies that do decode reach the handler as JSON."""
    for encoding, squeeze in (("gzip", gzip.compress), ("deflate", zlib.compress)):
        data = squeeze(_body({"name": f"squeezed {encoding}"}))
        answer = await _send_encoded(edge, "POST", "/v1/workflows", data, encoding)
        assert 201 == _status(answer), answer[:400]
        assert f"squeezed {encoding}" == _json_body(answer)["name"]


async def test_a_compression_bomb_is_413_in_bounded_memory(client: ApiClient, edge: Edge) -> None:
    """100 MB of JSON in 100 KB of gzip: 413 once past MAX_BODY_BYTES, never inflated whole."""
    inflated = 100 * 1024 * 1024
    bomb = gzip.compress(b'{"name": "' + b" " * inflated + b'"}', compresslevel=9)
    assert len(bomb) < 200 * 1024
    before = await _snapshot(client)
    tracemalloc.start()
    try:
        answer = await _send_encoded(edge, "POST", "/v1/workflows", bomb, "gzip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert 413 == _status(answer), answer[:400]
    assert "request_too_large" == _json_body(answer)["detail"]["code"]
    # The limit is 1 MiB; the server held a few chunks more, not the 100 MB.
    assert peak < 16 * 1024 * 1024, peak
    assert before == await _snapshot(client)
    await _still_serving(edge)


@pytest.mark.parametrize("half_close", [False, True], ids=["closed", "half-closed"])
async def test_a_client_that_leaves_mid_body_is_not_an_error_of_ours(
    client: ApiClient, edge: Edge, half_close: bool
) -> None:
    """A body cut short: no 5xx counted, no database warning, one info line of its own."""
    before = await _snapshot(client)
    head = _head("POST", "/v1/workflows", "Content-Type: application/json", "Content-Length: 1000")
    with capture_logs() as logs:
        _, writer = await asyncio.open_connection(edge.host, edge.port)
        writer.write(head + b'{"name": ')
        await writer.drain()
        if half_close:
            writer.write_eof()
            await asyncio.sleep(0.3)
        writer.close()
        await writer.wait_closed()
        # The server notices the closed connection on its next read.
        for _ in range(50):
            if any(entry["event"] == "client_disconnected" for entry in logs):
                break
            await asyncio.sleep(0.05)
    gone = [entry for entry in logs if entry["event"] == "client_disconnected"]
    assert 1 == len(gone), logs
    assert "info" == gone[0]["log_level"]
    assert not [entry for entry in logs if entry["log_level"] in ("warning", "error", "critical")]
    samples = await _scrape(edge)
    assert 1 == samples.get(
        (
            "http_requests_total",
            frozenset({"method": "POST", "route": "/v1/workflows", "status": "499"}.items()),
        )
    )
    statuses = {
        labels_dict["status"]
        for (name, labels), _ in samples.items()
        if name == "http_requests_total"
        for labels_dict in [dict(labels)]
    }
    assert not {s for s in statuses if s.startswith("5")}, statuses
    assert before == await _snapshot(client)
    await _still_serving(edge)


async def test_expect_continue_over_the_limit_is_413_before_any_body(edge: Edge) -> None:
    """A declared length over MAX_BODY_BYTES is refused at once, never invited with 100 Continue."""
    limit = Config().max_body_bytes
    head = _head(
        "POST",
        "/v1/workflows",
        "Content-Type: application/json",
        f"Content-Length: {limit + 1}",
        "Expect: 100-continue",
    )
    # No body is sent: the answer must come from the head alone, and the
    # server closes the connection after it.
    answer = await _exchange(edge, head, wait_s=5)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"100 Continue" not in answer
    assert "request_too_large" == _json_body(answer)["detail"]["code"]
    await _still_serving(edge)


async def test_expect_continue_under_the_limit_is_invited_and_served(edge: Edge) -> None:
    """The same expectation with a body we accept gets 100 Continue, then the answer."""
    data = _body({"name": "expected"})
    head = _head(
        "POST",
        "/v1/workflows",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        "Expect: 100-continue",
        "Connection: close",
    )
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(head)
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        writer.write(data)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    assert 201 == _status(answer), answer[:300]


async def test_a_declared_length_over_the_limit_is_413_without_reading_it(edge: Edge) -> None:
    """Without Expect too: the head alone decides, and the connection is closed after."""
    limit = Config().max_body_bytes
    head = _head("POST", "/v1/workflows/tests/runs", f"Content-Length: {limit * 50}")
    reader, writer = await asyncio.open_connection(edge.host, edge.port)
    try:
        writer.write(head + b"{")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()
    assert 413 == _status(answer), answer[:200]
    assert b"connection: close" in answer.lower()
    await _still_serving(edge)


async def test_a_body_declared_and_never_sent_is_408_within_the_bound(
    client: ApiClient, impatient: Edge
) -> None:
    """The server answers 408 and closes, about HTTP_BODY_TIMEOUT_S after the head."""
    before = await _snapshot(client)
    for method, path, _ in BODY_ROUTES[:3]:
        head = _head(method, path, "Content-Type: application/json", "Content-Length: 100")
        started = asyncio.get_running_loop().time()
        answer = await _exchange(impatient, head + b'{"na', wait_s=10)
        took = asyncio.get_running_loop().time() - started
        assert 408 == _status(answer), answer[:300]
        assert "request_timeout" == _json_body(answer)["detail"]["code"]
        assert 0.9 <= took < 5, took
    assert before == await _snapshot(client)
    await _still_serving(impatient)


async def test_a_stalled_head_and_an_idle_connection_are_closed_within_the_bound(
    impatient: Edge,
) -> None:
    """Half a request head, or nothing after a response: closed after HTTP_HEADERS_TIMEOUT_S."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await _exchange(impatient, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ", wait_s=10)
    assert b"" == answer
    assert loop.time() - started < 5
    # An idle keep-alive connection: one request answered, then silence.
    started = loop.time()
    answer = await _exchange(impatient, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", wait_s=10)
    assert 200 == _status(answer)
    assert 0.9 <= loop.time() - started < 5
    await _still_serving(impatient)


def test_only_the_databases_failures_mean_it_is_unavailable() -> None:
    """A client's reset connection is an OSError too, and not a database outage."""
    assert not availability.unavailable(ConnectionResetError("client went away"))
    assert not availability.unavailable(BrokenPipeError())
    assert availability.unavailable(DatabaseUnreachableError("connection refused"))
    assert availability.unavailable(TimeoutError())


async def test_a_pool_that_cannot_connect_raises_database_unreachable() -> None:
    """The pool tells a refused connection apart: the edge answers it 503, not a client's 499."""
    from service import db

    pool = await db.create_pool(
        "postgresql://postgres@127.0.0.1:1/postgres", min_size=0, max_size=1, acquire_timeout_s=5
    )
    try:
        with pytest.raises(DatabaseUnreachableError):
            async with pool.acquire():
                pass
    finally:
        await pool.close()
