"""Block executors against real local HTTP servers and real Python callables.

Every server here is an aiohttp application listening on 127.0.0.1; nothing is
mocked. The `function` tests call the sample callables of
`tests/fixtures_functions.py`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.execution import outbound
from service.execution.executors import BlockExecutionError, ExecutorSettings, execute, plain_inputs

MB = 1024 * 1024
FIXTURES = "tests.fixtures_functions"
INVOICE = {"type": "file", "document": {"id": "file_1", "filename": "a.pdf", "mime_type": "pdf"}}
INPUTS = {"text": {"type": "json", "data": "hello"}, "invoice": INVOICE}
PLAIN = {"text": "hello", "invoice": INVOICE["document"]}

RELEASE = web.AppKey("release", asyncio.Event)
RECEIVED = web.AppKey("received", list)
STREAMED = web.AppKey("streamed", list)
STREAM_ENDED = web.AppKey("stream_ended", asyncio.Event)


# The servers


async def _echo(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "query": dict(request.query),
            "content_type": request.headers.get("Content-Type"),
            "custom": request.headers.get("X-Custom"),
            "authorization": request.headers.get("Authorization"),
            "body": msgspec.json.decode(raw) if raw else None,
        }
    )


async def _slow(request: web.Request) -> web.Response:
    # Released at teardown, so the server never waits on a sleeping handler.
    async with asyncio.timeout(10):
        await request.app[RELEASE].wait()
    return web.json_response({"late": True})


async def _slow_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b'{"partial": ')
    async with asyncio.timeout(10):
        await request.app[RELEASE].wait()
    await response.write(b"true}")
    return response


async def _error(request: web.Request) -> web.Response:
    return web.Response(status=500, text="database exploded: " + "x" * 1000)


async def _big(request: web.Request) -> web.Response:
    # Valid JSON of 2 MB: only its size is wrong.
    return web.Response(body=b'"' + b"a" * (2 * MB) + b'"', content_type="application/json")


async def _big_stream(request: web.Request) -> web.StreamResponse:
    """Chunked (no Content-Length), up to 64 MB; records how much the client let through."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    written = 0
    try:
        await response.write(b'"')
        while written < 64 * MB:
            await response.write(b"a" * 65536)
            written += 65536
        await response.write(b'"')
    finally:
        # Also when the client hangs up (the handler is then cancelled).
        request.app[STREAMED].append(written)
        request.app[STREAM_ENDED].set()
    return response


async def _malformed(request: web.Request) -> web.Response:
    return web.Response(body=b'{"total": 12,', content_type="application/json")


async def _invalid_utf8(request: web.Request) -> web.Response:
    return web.Response(body=b'{"name": "caf\xe9"}', content_type="application/json")


async def _empty(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/echo?token=secret-token")


async def _runtime(request: web.Request) -> web.Response:
    body = await request.json()
    request.app[RECEIVED].append(body)
    return web.json_response(
        {"handle_outputs": {"output": {"type": body["block"]["type"], "seen": body}}, "extra": 1}
    )


async def _runtime_without_outputs(request: web.Request) -> web.Response:
    return web.json_response({"outputs": {"a": 1}})


async def _runtime_list_outputs(request: web.Request) -> web.Response:
    return web.json_response({"handle_outputs": [1, 2]})


async def _runtime_list(request: web.Request) -> web.Response:
    return web.json_response([{"handle_outputs": {}}])


@pytest.fixture(scope="module")
async def server() -> AsyncIterator[TestServer]:
    """One local server with a route per behaviour under test."""
    app = web.Application()
    app[RELEASE] = asyncio.Event()
    app[RECEIVED] = []
    app[STREAMED] = []
    app[STREAM_ENDED] = asyncio.Event()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_post("/slow", _slow)
    app.router.add_post("/slow-body", _slow_body)
    app.router.add_post("/error", _error)
    app.router.add_post("/big", _big)
    app.router.add_post("/big-stream", _big_stream)
    app.router.add_post("/malformed", _malformed)
    app.router.add_post("/invalid-utf8", _invalid_utf8)
    app.router.add_post("/empty", _empty)
    app.router.add_post("/redirect", _redirect)
    app.router.add_post("/runtime", _runtime)
    app.router.add_post("/runtime-without-outputs", _runtime_without_outputs)
    app.router.add_post("/runtime-list-outputs", _runtime_list_outputs)
    app.router.add_post("/runtime-list", _runtime_list)
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield test_server
    app[RELEASE].set()
    await test_server.close()


@pytest.fixture
async def settings() -> AsyncIterator[ExecutorSettings]:
    """Executor settings with a fresh client session and a 1 MB answer limit."""
    async with outbound.client_session(["127.0.0.1"]) as session:  # the test servers
        yield ExecutorSettings(
            session=session,
            function_modules=frozenset({FIXTURES}),
            max_answer_bytes=MB,
            connect_timeout_s=2.0,
            default_timeout_s=5.0,
        )


def _url(server: TestServer, path: str) -> str:
    return str(server.make_url(path))


async def _api_call_error(
    settings: ExecutorSettings, config: dict[str, Any], inputs: dict[str, Any] | None = None
) -> BlockExecutionError:
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_api", "api_call", config, inputs or INPUTS, settings)
    assert caught.value.details is not None
    return caught.value


# plain_inputs


def test_plain_inputs_unwrap_json_data_and_keep_file_references() -> None:
    """JSON handles give their data; file handles give their document reference."""
    typed = {
        "text": {"type": "json", "data": "hello"},
        "nothing": {"type": "json", "data": None},
        "missing_data": {"type": "json"},
        "nested": {"type": "json", "data": {"items": [1, {"a": True}]}},
        "invoice": INVOICE,
    }
    expected = {
        "text": "hello",
        "nothing": None,
        "missing_data": None,
        "nested": {"items": [1, {"a": True}]},
        "invoice": {"id": "file_1", "filename": "a.pdf", "mime_type": "pdf"},
    }
    assert expected == plain_inputs(typed)
    assert {} == plain_inputs({})


def test_plain_inputs_accept_the_decoded_request_structs() -> None:
    """The API's own handle input structs unwrap like their JSON form."""
    from service.models import FileHandleInput, FileRef, JsonHandleInput

    typed = {
        "a": JsonHandleInput(data=[1, 2]),
        "b": FileHandleInput(document=FileRef(id="file_1", filename="a.pdf", mime_type="pdf")),
    }
    expected = {"a": [1, 2], "b": {"id": "file_1", "filename": "a.pdf", "mime_type": "pdf"}}
    assert expected == plain_inputs(typed)


@pytest.mark.parametrize(
    "value", ["plain", {"data": 1}, {"type": "text", "data": 1}, {"type": "file"}]
)
def test_plain_inputs_refuse_an_untyped_value(value: Any) -> None:
    """A handle value that is neither a json nor a file input is a block failure."""
    with pytest.raises(BlockExecutionError) as caught:
        plain_inputs({"h": value})
    assert {"reason": "invalid_handle_input", "handle_id": "h"} == caught.value.details


# api_call


async def test_api_call_posts_the_plain_inputs_and_answers_output_json_0(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """The body is the plain handle inputs; the JSON answer is the output handle's value."""
    config = {"method": "POST", "url": _url(server, "/echo"), "headers": {"X-Custom": "yes"}}
    outputs = await execute("blk_api", "api_call", config, INPUTS, settings)
    expected = {
        "output-json-0": {
            "method": "POST",
            "query": {},
            "content_type": "application/json",
            "custom": "yes",
            "authorization": None,
            "body": PLAIN,
        }
    }
    assert expected == outputs


async def test_api_call_defaults_to_post_and_honours_the_method(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """Without a method the call is a POST; PUT sends the body; GET sends none."""
    url = _url(server, "/echo?page=2")
    default = await execute("blk_api", "api_call", {"url": url}, INPUTS, settings)
    assert ("POST", PLAIN) == (
        default["output-json-0"]["method"],
        default["output-json-0"]["body"],
    )
    put = await execute("blk_api", "api_call", {"url": url, "method": "put"}, INPUTS, settings)
    assert ("PUT", PLAIN) == (put["output-json-0"]["method"], put["output-json-0"]["body"])
    get = await execute("blk_api", "api_call", {"url": url, "method": "GET"}, INPUTS, settings)
    expected = {"method": "GET", "query": {"page": "2"}, "body": None, "content_type": None}
    assert expected == {key: get["output-json-0"][key] for key in expected}


async def test_api_call_sends_the_configured_headers(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """Configured headers are sent, and may override the content type."""
    config = {
        "url": _url(server, "/echo"),
        "headers": {"Authorization": "Bearer token", "Content-Type": "application/vnd.x+json"},
    }
    answer = (await execute("blk_api", "api_call", config, INPUTS, settings))["output-json-0"]
    assert ("Bearer token", "application/vnd.x+json") == (
        answer["authorization"],
        answer["content_type"],
    )


async def test_a_slow_api_call_times_out_quickly(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A server slower than the block's timeout_s is a failure, raised at the timeout."""
    started = time.monotonic()
    error = await _api_call_error(settings, {"url": _url(server, "/slow"), "timeout_s": 0.3})
    elapsed = time.monotonic() - started
    assert elapsed < 2.0
    assert ("timeout", 0.3) == (error.details["reason"], error.details["timeout_s"])
    assert "timed out after 0.3 s" in error.message


async def test_a_body_that_stalls_times_out(server: TestServer, settings: ExecutorSettings) -> None:
    """The timeout covers reading the answer, not only its headers."""
    started = time.monotonic()
    error = await _api_call_error(settings, {"url": _url(server, "/slow-body"), "timeout_s": 0.3})
    assert time.monotonic() - started < 2.0
    assert "timeout" == error.details["reason"]


async def test_the_default_timeout_applies_without_timeout_s(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A block without timeout_s gets the settings' default timeout."""
    quick = replace(settings, default_timeout_s=0.2)
    error = await _api_call_error(quick, {"url": _url(server, "/slow")})
    assert 0.2 == error.details["timeout_s"]


async def test_an_error_status_is_a_failure_with_its_status_and_body(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A 500 answer fails the block; the details carry the status and a capped snippet."""
    error = await _api_call_error(settings, {"url": _url(server, "/error")})
    expected = {
        "reason": "http_status",
        "status": 500,
        "method": "POST",
        "url": _url(server, "/error"),
    }
    assert expected == {key: error.details[key] for key in expected}
    assert error.details["body_snippet"].startswith("database exploded: xxx")
    assert 500 == len(error.details["body_snippet"])
    assert "HTTP 500" in error.message


async def test_credentials_and_query_never_appear_in_a_failure(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """The URL in the message and details has no user, password or query string."""
    port = server.port
    config = {"url": f"http://user:hunter2@127.0.0.1:{port}/error?api_key=s3cret#frag"}
    error = await _api_call_error(settings, config)
    assert f"http://127.0.0.1:{port}/error" == error.details["url"]
    shown = error.message + repr(error.details)
    assert ("hunter2" in shown, "s3cret" in shown, "user" in shown) == (False, False, False)


async def test_an_oversized_answer_is_refused(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A 2 MB answer with a 1 MB limit fails the block."""
    error = await _api_call_error(settings, {"url": _url(server, "/big")})
    assert ("answer_too_large", MB, 200) == (
        error.details["reason"],
        error.details["max_answer_bytes"],
        error.details["status"],
    )
    assert f"more than the limit of {MB} bytes" in error.message


async def test_an_oversized_streamed_answer_stops_being_read(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A chunked answer without Content-Length is cut off once it passes the limit."""
    server.app[STREAMED].clear()
    server.app[STREAM_ENDED].clear()
    started = time.monotonic()
    error = await _api_call_error(settings, {"url": _url(server, "/big-stream")})
    assert "answer_too_large" == error.details["reason"]
    # The server learns the client hung up: it never gets to send its 64 MB.
    async with asyncio.timeout(5):
        await server.app[STREAM_ENDED].wait()
    assert server.app[STREAMED][0] < 64 * MB
    assert time.monotonic() - started < 5.0


async def test_a_larger_limit_lets_the_same_answer_through(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """The limit is the settings' max_answer_bytes."""
    roomy = replace(settings, max_answer_bytes=3 * MB)
    outputs = await execute("blk_api", "api_call", {"url": _url(server, "/big")}, {}, roomy)
    assert 2 * MB == len(outputs["output-json-0"])


@pytest.mark.parametrize(
    ("path", "reason", "words"),
    [
        ("/malformed", "invalid_json", "not JSON"),
        ("/invalid-utf8", "invalid_utf8", "not valid UTF-8"),
        ("/empty", "invalid_json", "an empty body"),
    ],
)
async def test_an_answer_that_is_not_json_is_a_failure(
    server: TestServer, settings: ExecutorSettings, path: str, reason: str, words: str
) -> None:
    """Malformed JSON, invalid UTF-8 and an empty body each fail the block."""
    error = await _api_call_error(settings, {"url": _url(server, path)})
    assert reason == error.details["reason"]
    assert words in error.message
    assert "body_snippet" in error.details


async def test_a_redirect_is_not_followed(server: TestServer, settings: ExecutorSettings) -> None:
    """A 302 is a failure that says redirects are not followed; the target is not called."""
    error = await _api_call_error(settings, {"url": _url(server, "/redirect")})
    expected = {
        "reason": "redirect",
        "status": 302,
        "location": _url(server, "/echo"),
    }
    assert expected == {key: error.details[key] for key in expected}
    assert "redirects are not followed" in error.message
    assert "secret-token" not in error.message


async def test_a_refused_connection_is_a_failure(settings: ExecutorSettings) -> None:
    """Calling a closed port fails the block with the connection error."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error = await _api_call_error(settings, {"url": f"http://127.0.0.1:{port}/nothing"})
    assert ("connection_failed", "ClientConnectorError") == (
        error.details["reason"],
        error.details["error_type"],
    )
    assert "could not connect" in error.message
    assert "status" not in error.details


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"method": "POST"}, "`url` is missing"),
        ({"url": ""}, "`url` is missing"),
        ({"url": 12}, "`url` is missing"),
        ({"url": "ftp://127.0.0.1/file"}, "http or https"),
        ({"url": "file:///etc/passwd"}, "http or https"),
        ({"url": "/relative/path"}, "http or https"),
        ({"url": "http://127.0.0.1/", "method": "TRACE"}, "`method` must be one of"),
        ({"url": "http://127.0.0.1/", "method": 1}, "`method` must be one of"),
        ({"url": "http://127.0.0.1/", "headers": {"X": 1}}, "`headers` must be"),
        ({"url": "http://127.0.0.1/", "headers": ["X"]}, "`headers` must be"),
        ({"url": "http://127.0.0.1/", "timeout_s": 0}, "`timeout_s` must be"),
        ({"url": "http://127.0.0.1/", "timeout_s": "5"}, "`timeout_s` must be"),
        ({"url": "http://127.0.0.1/", "timeout_s": True}, "`timeout_s` must be"),
    ],
)
async def test_a_bad_api_call_config_is_a_failure(
    settings: ExecutorSettings, config: dict[str, Any], words: str
) -> None:
    """A missing or non-http(s) URL, a bad method, headers or timeout fail the block."""
    error = await _api_call_error(settings, config)
    assert {"reason": "invalid_config"} == error.details
    assert words in error.message


async def test_an_unsendable_header_is_a_failure(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """A header value aiohttp refuses to send is a block failure, not a crash."""
    config = {"url": _url(server, "/echo"), "headers": {"X-Custom": "a\r\nInjected: 1"}}
    error = await _api_call_error(settings, config)
    assert "request_failed" == error.details["reason"]


# The block runtime


async def test_other_block_types_run_on_the_block_runtime(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """The runtime receives the block and plain inputs; its handle_outputs are the result."""
    server.app[RECEIVED].clear()
    with_runtime = replace(settings, block_runtime_url=_url(server, "/runtime"))
    config = {"schema": {"type": "object"}, "model": "m"}
    outputs = await execute("blk_extract", "extract", config, INPUTS, with_runtime)
    sent = {
        "block": {"id": "blk_extract", "type": "extract", "config": config},
        "handle_inputs": PLAIN,
    }
    assert [sent] == server.app[RECEIVED]
    assert {"output": {"type": "extract", "seen": sent}} == outputs


@pytest.mark.parametrize(
    "path", ["/runtime-without-outputs", "/runtime-list-outputs", "/runtime-list"]
)
async def test_a_runtime_answer_without_handle_outputs_is_a_failure(
    server: TestServer, settings: ExecutorSettings, path: str
) -> None:
    """An answer that is not {"handle_outputs": {...}} fails the block."""
    with_runtime = replace(settings, block_runtime_url=_url(server, path))
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_c", "classifier", {}, INPUTS, with_runtime)
    assert caught.value.details is not None
    assert "invalid_runtime_answer" == caught.value.details["reason"]
    assert "handle_outputs" in caught.value.message


async def test_runtime_http_failures_are_failures(
    server: TestServer, settings: ExecutorSettings
) -> None:
    """The runtime's error statuses and timeouts fail the block like an api_call's."""
    failing = replace(settings, block_runtime_url=_url(server, "/error"))
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_s", "split", {}, INPUTS, failing)
    assert caught.value.details is not None
    assert (500, "http_status") == (caught.value.details["status"], caught.value.details["reason"])
    assert "block runtime" in caught.value.message
    slow = replace(settings, block_runtime_url=_url(server, "/slow"), default_timeout_s=0.3)
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_s", "split", {}, INPUTS, slow)
    assert caught.value.details is not None
    assert "timeout" == caught.value.details["reason"]


async def test_without_a_runtime_other_blocks_cannot_run(settings: ExecutorSettings) -> None:
    """With no runtime configured the failure names the block type and BLOCK_RUNTIME_URL."""
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_x", "extract", {}, INPUTS, settings)
    assert "BLOCK_RUNTIME_URL" in caught.value.message
    assert "'extract'" in caught.value.message
    assert {
        "reason": "no_block_runtime",
        "block_type": "extract",
        "variable": "BLOCK_RUNTIME_URL",
    } == caught.value.details


async def test_a_runtime_url_that_is_not_http_is_a_failure(settings: ExecutorSettings) -> None:
    """A BLOCK_RUNTIME_URL that is not http(s) fails the block, naming the variable."""
    bad = replace(settings, block_runtime_url="unix:///tmp/runtime.sock")
    with pytest.raises(BlockExecutionError) as caught:
        await execute("blk_x", "parse", {}, INPUTS, bad)
    assert "BLOCK_RUNTIME_URL must be an http or https URL" in caught.value.message


# function


async def _function(
    settings: ExecutorSettings, entrypoint: str, inputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    config = {"entrypoint": entrypoint}
    return await execute(
        "blk_fn", "function", config, INPUTS if inputs is None else inputs, settings
    )


async def _function_error(
    settings: ExecutorSettings, entrypoint: Any, inputs: dict[str, Any] | None = None
) -> BlockExecutionError:
    with pytest.raises(BlockExecutionError) as caught:
        await _function(settings, entrypoint, inputs)
    assert caught.value.details is not None
    return caught.value


async def test_a_sync_function_gets_the_plain_inputs(settings: ExecutorSettings) -> None:
    """A sync function is called with the plain inputs; file handles are document references."""
    assert {"echo": PLAIN} == await _function(settings, f"{FIXTURES}:echo")


async def test_an_async_function_is_awaited(settings: ExecutorSettings) -> None:
    """An async function is awaited and its result returned."""
    assert {"echo": PLAIN, "async": True} == await _function(settings, f"{FIXTURES}:async_echo")


async def test_dotted_attributes_and_async_callables_resolve(settings: ExecutorSettings) -> None:
    """`module:Class.method` and an instance with an async __call__ both work."""
    inputs = {"text": {"type": "json", "data": "quiet"}}
    assert {"text": "QUIET"} == await _function(settings, f"{FIXTURES}:Namespace.shout", inputs)
    expected = {"handles": ["invoice", "text"]}
    assert expected == await _function(settings, f"{FIXTURES}:async_callable")


async def test_a_parent_package_allows_its_submodules(settings: ExecutorSettings) -> None:
    """Listing `tests` allows `tests.fixtures_functions`; a mere name prefix does not."""
    by_parent = replace(settings, function_modules=frozenset({"tests"}))
    assert {"echo": PLAIN} == await _function(by_parent, f"{FIXTURES}:echo")
    by_prefix = replace(settings, function_modules=frozenset({"tests.fixtures"}))
    error = await _function_error(by_prefix, f"{FIXTURES}:echo")
    assert "function_not_allowed" == error.details["reason"]


@pytest.mark.parametrize("entrypoint", ["os:system", "subprocess:run", "builtins:eval"])
async def test_a_module_not_listed_is_refused(settings: ExecutorSettings, entrypoint: str) -> None:
    """A module outside FUNCTION_MODULES is refused before it is imported."""
    error = await _function_error(settings, entrypoint)
    assert ("function_not_allowed", "FUNCTION_MODULES") == (
        error.details["reason"],
        error.details["variable"],
    )
    module = entrypoint.partition(":")[0]
    assert f"function module '{module}' is not in FUNCTION_MODULES" in error.message


async def test_nothing_is_allowed_by_default(settings: ExecutorSettings) -> None:
    """With FUNCTION_MODULES empty, no function block runs."""
    error = await _function_error(
        replace(settings, function_modules=frozenset()), f"{FIXTURES}:echo"
    )
    assert "function_not_allowed" == error.details["reason"]


@pytest.mark.parametrize(
    ("entrypoint", "expected"),
    [
        (f"{FIXTURES}:os.system", ("function_not_allowed", "os")),
        (f"{FIXTURES}:getcwd", ("function_not_allowed", "posix")),
        (f"{FIXTURES}:__builtins__", ("invalid_config", None)),
    ],
)
async def test_an_allowed_module_cannot_reach_around_the_allow_list(
    settings: ExecutorSettings, entrypoint: str, expected: tuple[str, str | None]
) -> None:
    """Modules and functions imported into an allowed module, and private names, are refused."""
    error = await _function_error(settings, entrypoint)
    assert expected == (error.details["reason"], error.details.get("refused_module"))


@pytest.mark.parametrize(
    ("entrypoint", "reason"),
    [
        (f"{FIXTURES}:no_such_function", "attribute_missing"),
        (f"{FIXTURES}:Namespace.nope", "attribute_missing"),
        (f"{FIXTURES}:NOT_CALLABLE", "not_callable"),
        ("tests.no_such_module:f", "import_failed"),
        (FIXTURES, "invalid_config"),
        (f"{FIXTURES}:echo:again", "invalid_config"),
        (f"{FIXTURES}:", "invalid_config"),
        (None, "invalid_config"),
    ],
)
async def test_an_entrypoint_that_does_not_resolve_is_a_failure(
    settings: ExecutorSettings, entrypoint: Any, reason: str
) -> None:
    """Missing attributes or modules, non-callables and malformed entrypoints fail the block."""
    allow_tests = replace(settings, function_modules=frozenset({"tests"}))
    error = await _function_error(allow_tests, entrypoint)
    assert reason == error.details["reason"]


async def test_a_function_that_raises_is_a_failure(settings: ExecutorSettings) -> None:
    """The exception's type and message (no traceback) become the failure."""
    error = await _function_error(settings, f"{FIXTURES}:raises")
    expected = {
        "reason": "function_raised",
        "entrypoint": f"{FIXTURES}:raises",
        "module": FIXTURES,
        "error_type": "ValueError",
        "error_message": "cannot handle ['invoice', 'text']",
    }
    assert expected == error.details
    assert (
        f"function '{FIXTURES}:raises' raised ValueError: cannot handle ['invoice', 'text']"
        == error.message
    )
    assert "Traceback" not in error.message


async def test_a_function_calling_sys_exit_is_a_failure(settings: ExecutorSettings) -> None:
    """SystemExit from a function does not escape as SystemExit."""
    error = await _function_error(settings, f"{FIXTURES}:exits")
    assert ("function_raised", "SystemExit") == (
        error.details["reason"],
        error.details["error_type"],
    )


@pytest.mark.parametrize(
    ("entrypoint", "reason"),
    [("returns_list", "invalid_result"), ("returns_not_json", "result_not_json")],
)
async def test_a_result_that_is_not_a_json_object_is_a_failure(
    settings: ExecutorSettings, entrypoint: str, reason: str
) -> None:
    """A function must return a JSON-serialisable object of output handles."""
    error = await _function_error(settings, f"{FIXTURES}:{entrypoint}")
    assert reason == error.details["reason"]


async def test_a_result_larger_than_the_limit_is_a_failure(settings: ExecutorSettings) -> None:
    """A function's encoded result is held to max_answer_bytes too."""
    tiny = replace(settings, max_answer_bytes=10)
    error = await _function_error(tiny, f"{FIXTURES}:echo")
    assert "answer_too_large" == error.details["reason"]


async def test_results_are_plain_json_values(settings: ExecutorSettings) -> None:
    """Tuples become lists and datetimes RFC 3339 strings, as they will be stored."""
    expected = {"pair": [1, 2], "at": "2024-01-02T03:04:05Z"}
    assert expected == await _function(settings, f"{FIXTURES}:returns_rich_values")


async def test_a_function_cannot_change_the_test_inputs(settings: ExecutorSettings) -> None:
    """The function gets a copy: changing it leaves the caller's handle inputs as they were."""
    inputs = {"items": {"type": "json", "data": {"a": 1}}}
    outputs = await _function(settings, f"{FIXTURES}:mutates", inputs)
    assert {"echo": {"items": {"a": 1}, "added": True}} == outputs
    assert {"items": {"type": "json", "data": {"a": 1}}} == inputs


async def test_sync_functions_run_off_the_event_loop(settings: ExecutorSettings) -> None:
    """Five 0.3 s sync functions run concurrently, in well under 5 x 0.3 s."""
    started = time.monotonic()
    results = await asyncio.gather(
        *(_function(settings, f"{FIXTURES}:slow_sync") for _ in range(5))
    )
    elapsed = time.monotonic() - started
    assert [{"slept": 0.3}] * 5 == results
    assert elapsed < 0.9


async def test_the_event_loop_keeps_ticking_during_a_sync_function(
    settings: ExecutorSettings,
) -> None:
    """While a sync function sleeps, other coroutines keep running."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        await _function(settings, f"{FIXTURES}:slow_sync")
    finally:
        ticker.cancel()
    assert ticks >= 10


async def test_an_unknown_handle_input_shape_is_a_failure(settings: ExecutorSettings) -> None:
    """execute turns malformed handle inputs into a BlockExecutionError too."""
    error = await _function_error(settings, f"{FIXTURES}:echo", {"h": 1})
    assert "invalid_handle_input" == error.details["reason"]
