"""Outbound safety end to end: internal destinations are refused unless the operator allows them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web

from service.execution import outbound
from service.execution.assertions import AssertionServices, evaluate
from service.execution.executors import BlockExecutionError, ExecutorSettings, execute
from tests.helpers import ApiClient
from tests.integration.execution.test_execution import (
    CONFIG,
    RESULTS,
    RUNS,
    _add_test,
    _assertion,
    _finished,
    _pool,
    running,
)

Start = Callable[[str, Any], Awaitable[str]]
INPUTS = {"input": {"type": "json", "data": {"name": "acme"}}}


def _recording(hits: list[str], answer: Any) -> Any:
    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.json_response(answer)

    return handler


async def _api_call(url: str, allowed: list[str], **settings: Any) -> dict[str, Any]:
    async with outbound.client_session(allowed) as session:
        return await execute(
            "blk",
            "api_call",
            {"url": url, "timeout_s": 5},
            INPUTS,
            ExecutorSettings(session=session, **settings),
        )


async def _refused(url: str, allowed: list[str], **settings: Any) -> BlockExecutionError:
    with pytest.raises(BlockExecutionError) as caught:
        await _api_call(url, allowed, **settings)
    assert caught.value.details is not None
    return caught.value


async def test_an_api_call_to_a_local_server_needs_the_operators_allowance(
    client: ApiClient, aiohttp_server_factory: Start
) -> None:
    """Through the runner: blocked with a clear reason by default, passes once allowed."""
    hits: list[str] = []
    base = await aiohttp_server_factory("/vendor", _recording(hits, {"vendor": {"name": "ACME"}}))
    workflow = await client.workflow()
    block = await client.block(
        workflow["id"], type="api_call", config={"url": f"{base}/vendor", "timeout_s": 5}
    )
    await _add_test(client, workflow["id"], block["id"], {"n": 1}, _assertion(expected="ACME"))

    refused = msgspec.structs.replace(CONFIG, allowed_outbound_hosts=())
    first = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    async with running(_pool(client), refused):
        run = await _finished(client, first["id"])
    assert {"passed": 0, "failed": 0, "blocked": 1} == run["counts"]["outcome"]
    page = await client.call("GET", RESULTS, expect=200, run_id=first["id"])
    failure = page["data"][0]["assertion_result"]["failure"]
    assert "block_execution_failed" == failure["code"]
    assert "destination_not_allowed" == failure["details"]["reason"]
    assert "loopback" == failure["details"]["address_kind"]
    assert "ALLOWED_OUTBOUND_HOSTS" in failure["message"]
    assert [] == hits

    allowed = msgspec.structs.replace(CONFIG, allowed_outbound_hosts=(base.split("//")[1],))
    second = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    async with running(_pool(client), allowed):
        run = await _finished(client, second["id"])
    assert {"passed": 1, "failed": 0, "blocked": 0} == run["counts"]["outcome"]
    assert ["/vendor"] == hits


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]", "0x7f.1"])
async def test_every_spelling_of_loopback_is_refused(
    aiohttp_server_factory: Start, host: str
) -> None:
    """Names (refused by the session's resolver) and literals (refused before connecting)."""
    hits: list[str] = []
    base = await aiohttp_server_factory("/x", _recording(hits, {}))
    port = base.rsplit(":", 1)[1]
    error = await _refused(f"http://{host}:{port}/x", [])
    assert "destination_not_allowed" == error.details["reason"]  # type: ignore[index]
    assert "api_call POST http://" in error.message
    assert [] == hits


async def test_a_name_is_checked_on_the_addresses_used_to_connect(
    aiohttp_server_factory: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One resolution per connection, by the guard: what it checked is where it connects.

    `service.test` resolves (here) to 127.0.0.1: allowed by name it reaches the
    server; `other.test`, resolving to the same address, is refused.
    """
    hits: list[str] = []
    base = await aiohttp_server_factory("/x", _recording(hits, {"ok": True}))
    port = int(base.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    lookups: list[str] = []

    async def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    answer = await _api_call(f"http://service.test:{port}/x", ["service.test"])
    assert {"output-json-0": {"ok": True}} == answer
    assert ["service.test"] == lookups
    error = await _refused(f"http://other.test:{port}/x", ["service.test"])
    assert "'other.test' resolves to a loopback address" in error.message
    assert "address" not in error.details  # type: ignore[operator]
    assert ["/x"] == hits


async def test_a_redirect_from_an_allowed_server_to_a_forbidden_one_is_not_followed(
    aiohttp_server_factory: Start,
) -> None:
    """Only the allowed server's port is listed; its redirect to another one stops there."""
    hits: list[str] = []
    forbidden = await aiohttp_server_factory("/secret", _recording(hits, {"secret": 1}))

    async def redirect(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPFound(f"{forbidden}/secret")

    allowed = await aiohttp_server_factory("/start", redirect)
    error = await _refused(f"{allowed}/start", [allowed.split("//")[1]])
    assert "redirect" == error.details["reason"]  # type: ignore[index]
    assert ["/start"] == hits
    # And the forbidden one really is refused when called directly.
    direct = await _refused(f"{forbidden}/secret", [allowed.split("//")[1]])
    assert "destination_not_allowed" == direct.details["reason"]  # type: ignore[index]
    assert ["/start"] == hits


async def test_the_block_runtime_is_refused_on_an_internal_address_unless_allowed(
    aiohttp_server_factory: Start,
) -> None:
    """BLOCK_RUNTIME_URL on loopback needs the same allowance."""
    hits: list[str] = []
    runtime = await aiohttp_server_factory(
        "/run", _recording(hits, {"handle_outputs": {"output-json-0": 1}})
    )
    for allowed, expected_hits in (([], []), (["127.0.0.1"], ["/run"])):
        async with outbound.client_session(allowed) as session:
            settings = ExecutorSettings(session=session, block_runtime_url=f"{runtime}/run")
            if not allowed:
                with pytest.raises(BlockExecutionError) as caught:
                    await execute("blk", "extract", {}, INPUTS, settings)
                assert "destination_not_allowed" == caught.value.details["reason"]  # type: ignore[index]
            else:
                assert {"output-json-0": 1} == await execute("blk", "extract", {}, INPUTS, settings)
        assert expected_hits == hits


async def test_an_unguarded_session_allows_only_public_addresses(
    aiohttp_server_factory: Start,
) -> None:
    """A plain aiohttp session given to the executors still never reaches loopback."""
    import aiohttp

    hits: list[str] = []
    base = await aiohttp_server_factory("/x", _recording(hits, {}))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BlockExecutionError) as caught:
            await execute(
                "blk", "api_call", {"url": f"{base}/x"}, INPUTS, ExecutorSettings(session=session)
            )
    assert "destination_not_allowed" == caught.value.details["reason"]  # type: ignore[index]
    assert [] == hits


async def test_the_judge_does_not_follow_redirects(aiohttp_server_factory: Start) -> None:
    """JUDGE_URL is the operator's; a redirect from it is not followed (values stay there)."""
    hits: list[str] = []
    elsewhere = await aiohttp_server_factory("/judge", _recording(hits, {"label": "yes"}))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect(f"{elsewhere}/judge")

    judge = await aiohttp_server_factory("/judge", redirect)
    services = AssertionServices(judge_url=f"{judge}/judge", session=None, timeout_s=5)
    spec = {
        "id": "a-1",
        "target": {"output_handle_id": "out"},
        "condition": {"kind": "llm_judged_as", "rubric": "r", "expected_label": "yes"},
    }
    result = await evaluate(spec, {"out": "value"}, services)
    assert "blocked" == result.outcome
    assert result.failure is not None
    assert "judge_unavailable" == result.failure.code
    assert "HTTP 307 (a redirect" in result.failure.message
    assert [] == hits
