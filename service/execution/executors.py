"""Block executors: run one block on a test's handle inputs and return its handle outputs.

Three ways to run a block (SPEC "Workflows and blocks"):

- `api_call`: the handle inputs are sent as a JSON body to the block's URL; the
  JSON answer is the value of the output handle `output-json-0`.
- `function`: an allow-listed Python callable (`FUNCTION_MODULES`), sync or
  async, called with the handle inputs and returning the handle outputs.
- every other type: the operator's block runtime (`BLOCK_RUNTIME_URL`) is asked
  to run it.

Whatever goes wrong while running a block (a refused connection, a timeout, an
error status, an oversized or malformed answer, a function that raises) becomes
a `BlockExecutionError`: the test's verdict is then `blocked` with the failure
code `block_execution_failed`. Nothing else escapes `execute`, except the
cancellation the runner uses for its own per-test timeout.

Handle payloads are never logged, nor copied into error details: a failure
carries the block's URL (without credentials, query or fragment), the status
and a short snippet of what the remote side answered.

HTTP calls go only to public addresses, or to those the operator allows
(`ALLOWED_OUTBOUND_HOSTS`, see `service.execution.outbound`); a refused destination is a
`BlockExecutionError` with the reason `destination_not_allowed`. Redirects are
never followed.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import re
from dataclasses import dataclass
from importlib import import_module
from typing import Any, NoReturn

import aiohttp
import msgspec
import yarl

from service.execution import outbound
from service.registry.validation import API_CALL_OUTPUT, METHODS

__all__ = ["BlockExecutionError", "ExecutorSettings", "execute", "plain_inputs"]

SNIPPET_CHARS = 500
# Enough bytes for SNIPPET_CHARS characters of UTF-8 (at most four bytes each).
_SNIPPET_BYTES = 4 * SNIPPET_CHARS
_CHUNK_BYTES = 64 * 1024
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ATTRIBUTES = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)*")
_encode = msgspec.json.Encoder().encode


class BlockExecutionError(Exception):
    """The block failed to execute: the test's verdict is `blocked` / `block_execution_failed`.

    `message` says what went wrong in one sentence; `details` holds the facts
    (always a `reason` code; for HTTP failures `url`, and `status` and
    `body_snippet` when the remote side answered).
    """

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@dataclass(frozen=True)
class ExecutorSettings:
    """What the executors need from the process.

    `session`: the aiohttp client session of the process (never closed here);
    made by `outbound.client_session`, so that it connects only to public or
    allowed addresses. Any other session is treated as allowing nothing but
    public addresses (checked before each call, without pinning).
    `block_runtime_url`: `BLOCK_RUNTIME_URL`, where blocks of other types run.
    `function_modules`: `FUNCTION_MODULES`, the modules (and their submodules)
    whose callables `function` blocks may call.
    `max_answer_bytes`: the largest answer read from an HTTP call (or returned
    by a function, once encoded as JSON).
    `connect_timeout_s`, `default_timeout_s`: the connection timeout of every
    HTTP call, and the total timeout of a call whose block sets no `timeout_s`.
    """

    session: aiohttp.ClientSession
    block_runtime_url: str | None = None
    function_modules: frozenset[str] = frozenset()
    max_answer_bytes: int = 10 * 1024 * 1024
    connect_timeout_s: float = 5.0
    default_timeout_s: float = 30.0


def plain_inputs(handle_inputs: dict[str, Any]) -> dict[str, Any]:
    """The plain value of each handle of a test's typed handle inputs.

    `{H: {"type": "json", "data": v}}` gives `{H: v}` and
    `{H: {"type": "file", "document": {id, filename, mime_type}}}` gives
    `{H: {id, filename, mime_type}}` (the document reference, not the file's
    content). Any other shape raises `BlockExecutionError`.
    """
    plain: dict[str, Any] = {}
    for handle_id, value in handle_inputs.items():
        typed = msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
        kind = typed.get("type") if isinstance(typed, dict) else None
        if kind == "json":
            plain[handle_id] = typed.get("data")
        elif kind == "file" and "document" in typed:
            plain[handle_id] = typed["document"]
        else:
            message = (
                f"handle input {handle_id!r} is neither "
                '{"type": "json", "data": ...} nor {"type": "file", "document": ...}'
            )
            raise BlockExecutionError(
                message, {"reason": "invalid_handle_input", "handle_id": handle_id}
            )
    return plain


async def execute(
    block_id: str,
    block_type: str,
    config: dict[str, Any],
    handle_inputs: dict[str, Any],
    settings: ExecutorSettings,
) -> dict[str, Any]:
    """Run one block on the test's (typed) handle inputs.

    `block_id`, `block_type`, `config`: the block as registered.
    `handle_inputs`: the test's typed handle inputs (see `plain_inputs`).
    `settings`: the process's executor settings.

    Returns `{OUTPUT_HANDLE_ID: plain value}`. Raises `BlockExecutionError` when
    the block fails, whatever the cause.
    """
    try:
        inputs = plain_inputs(handle_inputs)
        if block_type == "api_call":
            return await _api_call(config, inputs, settings)
        if block_type == "function":
            return await _function(config, inputs, settings)
        return await _block_runtime(block_id, block_type, config, inputs, settings)
    except BlockExecutionError:
        raise
    except Exception as error:
        # A safety net: the executors above turn every failure they expect into
        # a BlockExecutionError; anything else is still this block's failure,
        # not the runner's.
        message = f"{block_type} block {block_id!r} failed: {_describe(error)}"
        raise BlockExecutionError(
            message, {"reason": "unexpected_error", "error_type": type(error).__name__}
        ) from error


# api_call


async def _api_call(
    config: dict[str, Any], inputs: dict[str, Any], settings: ExecutorSettings
) -> dict[str, Any]:
    url = _http_url(config.get("url"), "api_call block config `url`")
    method = config.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in METHODS:
        _invalid_config(
            f"api_call block config `method` must be one of {', '.join(sorted(METHODS))}, "
            f"got {method!r}"
        )
    method = method.upper()
    headers = config.get("headers") or {}
    if not isinstance(headers, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in headers.items()
    ):
        _invalid_config("api_call block config `headers` must be an object of strings")
    timeout_s = config.get("timeout_s")
    if timeout_s is None:
        timeout_s = settings.default_timeout_s
    elif (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not math.isfinite(timeout_s)
        or timeout_s <= 0
    ):
        _invalid_config(
            f"api_call block config `timeout_s` must be a positive number, got {timeout_s!r}"
        )
    body = None if method == "GET" else _encode(inputs)
    answer = await _http_json(
        settings,
        what=f"api_call {method} {_safe_url(url)}",
        method=method,
        url=url,
        body=body,
        headers=headers,
        timeout_s=float(timeout_s),
    )
    return {API_CALL_OUTPUT: answer}


# The block runtime


async def _block_runtime(
    block_id: str,
    block_type: str,
    config: dict[str, Any],
    inputs: dict[str, Any],
    settings: ExecutorSettings,
) -> dict[str, Any]:
    if not settings.block_runtime_url:
        message = (
            f"cannot run block {block_id!r} of type {block_type!r}: no block runtime is "
            "configured; set BLOCK_RUNTIME_URL to the URL of a block runtime "
            "(only api_call and function blocks run without one)"
        )
        raise BlockExecutionError(
            message,
            {
                "reason": "no_block_runtime",
                "block_type": block_type,
                "variable": "BLOCK_RUNTIME_URL",
            },
        )
    url = _http_url(settings.block_runtime_url, "BLOCK_RUNTIME_URL")
    what = f"block runtime {_safe_url(url)} (block {block_id!r} of type {block_type!r})"
    body = _encode(
        {"block": {"id": block_id, "type": block_type, "config": config}, "handle_inputs": inputs}
    )
    answer = await _http_json(
        settings,
        what=what,
        method="POST",
        url=url,
        body=body,
        headers={},
        timeout_s=settings.default_timeout_s,
    )
    outputs = answer.get("handle_outputs") if isinstance(answer, dict) else None
    if not isinstance(outputs, dict):
        message = f"{what} answered without a `handle_outputs` object"
        raise BlockExecutionError(
            message,
            {
                "reason": "invalid_runtime_answer",
                "url": _safe_url(url),
                "body_snippet": _snippet(_encode(answer)),
            },
        )
    return outputs


# HTTP, shared by api_call and the block runtime


async def _http_json(
    settings: ExecutorSettings,
    *,
    what: str,
    method: str,
    url: yarl.URL,
    body: bytes | None,
    headers: dict[str, str],
    timeout_s: float,
) -> Any:
    """Send one request and decode its JSON answer, read up to `max_answer_bytes`.

    `what` names the call in error messages (never with credentials or query).
    """
    safe_url = _safe_url(url)
    facts: dict[str, Any] = {"url": safe_url, "method": method}
    await _check_destination(settings, url, what, facts)
    sent_headers = {"Content-Type": "application/json"} if body is not None else {}
    sent_headers.update(headers)
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=settings.connect_timeout_s)
    limit = settings.max_answer_bytes
    try:
        async with settings.session.request(
            method,
            url,
            data=body,
            headers=sent_headers,
            timeout=timeout,
            # A redirect could lead the handle inputs to another host: the block's
            # URL must be the final one.
            allow_redirects=False,
            raise_for_status=False,
        ) as response:
            facts["status"] = response.status
            if 300 <= response.status < 400:
                location = response.headers.get("Location")
                facts["reason"] = "redirect"
                if location is not None:
                    facts["location"] = _safe_location(url, location)
                _fail(
                    f"{what} answered HTTP {response.status} (a redirect"
                    f"{' to ' + facts['location'] if location is not None else ''}); "
                    "redirects are not followed: configure the final URL",
                    facts,
                )
            if not 200 <= response.status < 300:
                snippet = await _read_snippet(response)
                facts.update(reason="http_status", body_snippet=snippet)
                status = f"{response.status} {response.reason or ''}".strip()
                _fail(f"{what} answered HTTP {status}", facts)
            length = response.content_length
            too_large = (
                length is not None
                and length > limit
                and not response.headers.get("Content-Encoding")
            )
            raw = None if too_large else await _read_capped(response, limit)
            if raw is None:
                # Stop here: the rest of the answer is never read, and the
                # connection is dropped rather than drained.
                response.close()
                facts.update(reason="answer_too_large", max_answer_bytes=limit)
                _fail(f"{what} answered more than the limit of {limit} bytes", facts)
    except BlockExecutionError:
        raise
    except TimeoutError as error:
        facts.update(reason="timeout", timeout_s=timeout_s, error_type=type(error).__name__)
        _fail(f"{what} timed out after {timeout_s:g} s", facts, error)
    except aiohttp.ClientConnectorError as error:
        _connect_failed(what, error, url, facts)
    except (aiohttp.ClientError, OSError, ValueError) as error:
        # A peer that hangs up, a malformed answer, a header aiohttp refuses to send.
        facts.update(reason="request_failed", error_type=type(error).__name__)
        _fail(f"{what} failed: {_scrub(_describe(error), url, safe_url)}", facts, error)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        facts.update(reason="invalid_utf8", body_snippet=_snippet(raw))
        _fail(f"{what} answered a body that is not valid UTF-8: {error.reason}", facts, error)
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as error:
        facts.update(reason="invalid_json", body_snippet=_snippet(raw))
        answered = "an empty body" if not raw.strip() else f"a body that is not JSON ({error})"
        _fail(f"{what} answered {answered}", facts, error)


async def _check_destination(
    settings: ExecutorSettings, url: yarl.URL, what: str, facts: dict[str, Any]
) -> None:
    """Refuse an internal destination before sending anything.

    With the guarded session, only an address written in the URL is checked
    here (aiohttp does not resolve those); host names are checked by the
    session's resolver, on the very addresses it then connects to.
    """
    host, port = url.raw_host or "", url.port or 0
    policy = outbound.policy_of(settings.session)
    try:
        if policy is not None:
            outbound.check_literal(host, port, policy)
        else:
            await outbound.resolve_checked(host, port, outbound.Policy())
    except outbound.Refused as refused:
        _refused(what, refused, facts)
    except OSError as error:
        facts.update(reason="connection_failed", error_type=type(error).__name__)
        _fail(f"{what} could not connect: {_describe(error)}", facts, error)


def _connect_failed(
    what: str, error: aiohttp.ClientConnectorError, url: yarl.URL, facts: dict[str, Any]
) -> NoReturn:
    if isinstance(error.os_error, outbound.Refused):
        # The guarded resolver refused what the host name resolved to.
        _refused(what, error.os_error, facts)
    # Connection refused, an unknown host, a TLS handshake that fails.
    facts.update(reason="connection_failed", error_type=type(error).__name__)
    safe_url = facts["url"]
    _fail(f"{what} could not connect: {_scrub(_describe(error), url, safe_url)}", facts, error)


def _refused(what: str, refused: outbound.Refused, facts: dict[str, Any]) -> NoReturn:
    facts.update(reason="destination_not_allowed", variable=outbound.VARIABLE, **refused.details())
    _fail(f"{what} refused: {refused}", facts, refused)


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is longer than `limit` bytes."""
    buffer = bytearray()
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        buffer += chunk
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def _read_snippet(response: aiohttp.ClientResponse) -> str:
    """The start of an error answer, as text (best effort: a failure to read gives '')."""
    buffer = bytearray()
    try:
        async for chunk in response.content.iter_chunked(_SNIPPET_BYTES):
            buffer += chunk
            if len(buffer) >= _SNIPPET_BYTES:
                break
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        pass
    return _snippet(bytes(buffer))


def _snippet(raw: bytes) -> str:
    return raw[:_SNIPPET_BYTES].decode("utf-8", errors="replace")[:SNIPPET_CHARS]


def _http_url(value: Any, name: str) -> yarl.URL:
    if not isinstance(value, str) or not value:
        _invalid_config(f"{name} is missing: an http(s) URL is needed")
    try:
        url = yarl.URL(value)
    except (TypeError, ValueError) as error:
        _invalid_config(f"{name} is not a valid URL: {error}")
    if url.scheme not in ("http", "https") or not url.host:
        _invalid_config(f"{name} must be an http or https URL with a host")
    return url


def _safe_url(url: yarl.URL) -> str:
    """The URL without credentials, query or fragment: safe to show in a test result."""
    return str(url.with_user(None).with_query(None).with_fragment(None))


def _safe_location(url: yarl.URL, location: str) -> str:
    try:
        return _safe_url(url.join(yarl.URL(location)))
    except (TypeError, ValueError):
        return "(an invalid Location header)"


def _scrub(text: str, url: yarl.URL, safe_url: str) -> str:
    """`text` with the full URL (if an error repeats it) replaced by its safe form."""
    return text.replace(str(url), safe_url) if str(url) != safe_url else text


# function


async def _function(
    config: dict[str, Any], inputs: dict[str, Any], settings: ExecutorSettings
) -> dict[str, Any]:
    entrypoint = config.get("entrypoint")
    if not isinstance(entrypoint, str) or entrypoint.count(":") != 1:
        _invalid_config(
            "function block config `entrypoint` must be 'package.module:function', "
            f"got {entrypoint!r}"
        )
    module_name = entrypoint.split(":")[0]
    facts: dict[str, Any] = {"entrypoint": entrypoint, "module": module_name}
    key = (entrypoint, settings.function_modules)
    target = _RESOLVED.get(key)
    if target is None:
        target = _RESOLVED[key] = _resolve(entrypoint, facts, settings)
    # A private copy: the function may change its inputs, not the test's.
    arguments = msgspec.json.decode(_encode(inputs))
    try:
        if inspect.iscoroutinefunction(target):
            result = await target(arguments)
        else:
            # In a thread: a slow sync function must not stall the event loop.
            # (An instance with an async `__call__` just makes its coroutine
            # there, which is then awaited here.)
            result = await asyncio.to_thread(target, arguments)
            if inspect.isawaitable(result):
                result = await result
    except (Exception, SystemExit) as error:
        facts.update(
            reason="function_raised",
            error_type=type(error).__name__,
            error_message=str(error)[:SNIPPET_CHARS],
        )
        _fail(f"function {entrypoint!r} raised {_describe(error)}", facts, error)
    return _function_outputs(entrypoint, result, facts, settings)


# Resolved (allowed, imported, checked) entrypoints: a run of thousands of tests
# of one function block resolves it once.
_RESOLVED: dict[tuple[str, frozenset[str]], Any] = {}


def _resolve(entrypoint: str, facts: dict[str, Any], settings: ExecutorSettings) -> Any:
    """The callable named by an allowed `package.module:attribute.path`."""
    module_name, attributes = entrypoint.split(":")
    if not _MODULE.fullmatch(module_name) or not _ATTRIBUTES.fullmatch(attributes):
        facts["reason"] = "invalid_config"
        _fail(
            f"function entrypoint {entrypoint!r} is not 'package.module:function' "
            "(names after the colon may not start with '_')",
            facts,
        )
    # Checked before the import: importing a module runs its code.
    if not _allowed(module_name, settings.function_modules):
        facts.update(reason="function_not_allowed", variable="FUNCTION_MODULES")
        _fail(
            f"function module {module_name!r} is not in FUNCTION_MODULES: the operator "
            "must list it (or a parent package) there to allow its functions",
            facts,
        )
    try:
        target: Any = import_module(module_name)
    except Exception as error:
        facts.update(reason="import_failed", error_type=type(error).__name__)
        _fail(
            f"function module {module_name!r} could not be imported: {_describe(error)}",
            facts,
            error,
        )
    for name in attributes.split("."):
        if inspect.ismodule(target) and target.__name__ != module_name:
            # `allowed.module:os.system` must not reach around the allow-list.
            _refuse_module(target.__name__, entrypoint, facts, settings)
        try:
            target = getattr(target, name)
        except AttributeError:
            facts["reason"] = "attribute_missing"
            _fail(f"function {entrypoint!r} does not exist: no attribute {name!r}", facts)
    if inspect.isroutine(target):
        defined_in = getattr(target, "__module__", None)
        if isinstance(defined_in, str):
            # A function imported into an allowed module from elsewhere
            # (`from os import system`) is not the operator's code.
            _refuse_module(defined_in, entrypoint, facts, settings)
    if not callable(target):
        facts["reason"] = "not_callable"
        _fail(f"function {entrypoint!r} is not callable", facts)
    return target


def _function_outputs(
    entrypoint: str, result: Any, facts: dict[str, Any], settings: ExecutorSettings
) -> dict[str, Any]:
    """A function's result as plain JSON output handles, or a BlockExecutionError."""
    if not isinstance(result, dict) or not all(isinstance(key, str) for key in result):
        facts.update(reason="invalid_result", result_type=type(result).__name__)
        _fail(
            f"function {entrypoint!r} returned {type(result).__name__}, not an object of "
            "output handles ({OUTPUT_HANDLE_ID: value})",
            facts,
        )
    try:
        encoded = _encode(result)
    except (TypeError, ValueError, OverflowError, RecursionError) as error:
        facts.update(reason="result_not_json", error_type=type(error).__name__)
        _fail(
            f"function {entrypoint!r} returned a value that is not JSON: {_describe(error)}",
            facts,
            error,
        )
    if len(encoded) > settings.max_answer_bytes:
        facts.update(reason="answer_too_large", max_answer_bytes=settings.max_answer_bytes)
        _fail(
            f"function {entrypoint!r} returned more than the limit of "
            f"{settings.max_answer_bytes} bytes (as JSON)",
            facts,
        )
    # Plain JSON values from here on (tuples become lists, datetimes strings):
    # exactly what will be stored and asserted on.
    outputs: dict[str, Any] = msgspec.json.decode(encoded)
    return outputs


def _allowed(module_name: str, function_modules: frozenset[str]) -> bool:
    return any(
        module_name == allowed or module_name.startswith(allowed + ".")
        for allowed in function_modules
        if allowed
    )


def _refuse_module(
    module_name: str, entrypoint: str, facts: dict[str, Any], settings: ExecutorSettings
) -> None:
    if _allowed(module_name, settings.function_modules):
        return
    facts.update(
        reason="function_not_allowed", variable="FUNCTION_MODULES", refused_module=module_name
    )
    _fail(
        f"function {entrypoint!r} resolves into module {module_name!r}, which is not in "
        "FUNCTION_MODULES",
        facts,
    )


# Failures


def _invalid_config(message: str) -> NoReturn:
    raise BlockExecutionError(message, {"reason": "invalid_config"})


def _fail(message: str, details: dict[str, Any], cause: BaseException | None = None) -> NoReturn:
    raise BlockExecutionError(message, details) from cause


def _describe(error: BaseException) -> str:
    """`Type: message`, one line, bounded: never a traceback."""
    text = " ".join(str(error).split())
    name = type(error).__name__
    return f"{name}: {text[:SNIPPET_CHARS]}" if text else name
