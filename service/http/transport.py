"""What arrives on the wire before a handler runs: the request body and the connection's clock.

aiohttp reads a body lazily, inside the handler's `request.read()`, and says
nothing about how long it may take. Left there, a body that does not decode
(`Content-Encoding: gzip` over plain bytes) escaped as aiohttp's
`RequestPayloadError` (a 500), a client that left mid-body raised an `OSError`
that read like a database outage (a 503 and a warning), and a client that
declared a body and never sent it was waited on forever.

So the edge receives every body here first, once, before the handler: within
`HTTP_BODY_TIMEOUT_S` (else 408 and the connection closed), at most
`MAX_BODY_BYTES` as sent and again once decoded (else 413: a small gzip body
that inflates past the limit is cut off as it inflates, never held whole).
We decode gzip and deflate ourselves (aiohttp's own decoding is switched off,
`auto_decompress=False`): a body that does not decode is a 400, any other
encoding a 415, where aiohttp answered an encoding it lacks a package for
(br, zstd) in plain text. The handler's `request.read()` then returns the
decoded bytes. A client that left is `ClientGone`: logged at info, counted
under its own status, never a 5xx.

The connection's clock: aiohttp closes a connection that has not sent a
complete request head within its keep-alive timeout of opening or of its
previous response, which bounds both a slow head and an idle keep-alive
connection: `HTTP_HEADERS_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import zlib
from dataclasses import dataclass
from typing import Any

from aiohttp import hdrs, web

from service.http.errors import ApiError

# What a client that left gets recorded as (nginx's "client closed request"):
# never sent, since nobody is there to read it.
CLIENT_GONE_STATUS = 499

# The encodings we decode (`identity` is no encoding); anything else is a 415.
DECODED_ENCODINGS = frozenset({"gzip", "x-gzip", "deflate", "identity"})


class ClientGone(Exception):
    """The client closed or reset its connection before its request was received."""


@dataclass(frozen=True)
class BodyLimits:
    """How much body a request may send, and how long it may take to send it.

    Attributes:
        max_bytes: the most bytes a body may have, as sent and once decoded
            (`MAX_BODY_BYTES`).
        timeout_s: the longest time from the request head to the body's last
            byte (`HTTP_BODY_TIMEOUT_S`).
    """

    max_bytes: int = 1024 * 1024
    timeout_s: float = 30.0


BODY_LIMITS = web.AppKey("body_limits", BodyLimits)
_DEFAULT_LIMITS = BodyLimits()


def limits(app: web.Application) -> BodyLimits:
    """The app's body limits (the defaults for an app built without `create_app`)."""
    return app.get(BODY_LIMITS, _DEFAULT_LIMITS)


def connection_options(headers_timeout_s: float) -> dict[str, Any]:
    """aiohttp's per-connection options (the app's `handler_args`) for the above."""
    return {"keepalive_timeout": headers_timeout_s, "auto_decompress": False}


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large", f"The request body is larger than {limit} bytes")


def _closing(error: ApiError) -> web.Response:
    """The error's answer, on a connection closed after it (the body was not read whole)."""
    response = error.response()
    response.force_close()
    return response


def refuse_early(request: web.Request, bounds: BodyLimits) -> web.Response | None:
    """The answer a request gets from its head alone, before any of its body is read.

    A declared length over the limit is a 413 at once (so `Expect: 100-continue`
    never invites a body we would refuse), and an encoding we do not decode is a
    415: its bytes could only reach the handler undecoded.
    """
    declared = request.content_length
    if declared is not None and declared > bounds.max_bytes:
        if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue":
            # The client waits for our word before sending: nothing to linger for.
            _abandon(request)
        return _closing(_too_large(bounds.max_bytes))
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding and encoding not in DECODED_ENCODINGS:
        error = ApiError(
            415,
            "unsupported_content_encoding",
            f"Content-Encoding {encoding[:64]!r} is not accepted: send gzip, deflate or none",
        )
        return _closing(error)
    return None


async def receive_body(request: web.Request, bounds: BodyLimits) -> web.Response | None:
    """Read the whole body into the request, or the answer that refuses it.

    Raises:
        ClientGone: the client closed or reset the connection mid-body.
    """
    early = refuse_early(request, bounds)
    if early is not None or not request.body_exists:
        return early
    try:
        async with asyncio.timeout(bounds.timeout_s):
            raw = await request.read()
    except TimeoutError:
        _abandon(request)
        message = f"The request body did not arrive within {bounds.timeout_s:g} s"
        return _closing(ApiError(408, "request_timeout", message))
    except web.HTTPRequestEntityTooLarge:
        return _closing(_too_large(bounds.max_bytes))
    except (ConnectionError, web.RequestPayloadError) as error:
        # RequestPayloadError: the connection ended before the declared length.
        raise ClientGone(f"{type(error).__name__}: {error}") from error
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
    if encoding in ("gzip", "x-gzip", "deflate"):
        try:
            decoded = _decompress(raw, encoding, bounds.max_bytes)
        except _Undecodable as error:
            message = f"The request body could not be decoded as {encoding}: {error}"
            return _closing(ApiError(400, "invalid_body_encoding", message))
        if decoded is None:
            return _closing(_too_large(bounds.max_bytes))
        # What the handler's own read() returns: aiohttp keeps the body it
        # read here and offers no public way to replace it.
        request._read_bytes = decoded
    return None


class _Undecodable(Exception):
    """The body is not valid data of its Content-Encoding."""


def _decompress(data: bytes, encoding: str, limit: int) -> bytes | None:
    """`data` decoded; None once it inflates past `limit` bytes (it is never held past that)."""
    if encoding == "deflate":
        # RFC 9110 means zlib's format; some clients send raw deflate: zlib's
        # header has 8 (deflate) in its low nibble, as aiohttp's client checks too.
        wbits = zlib.MAX_WBITS if data[:1] and data[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        wbits = 16 + zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    out = bytearray()
    pending = data
    try:
        while pending and not inflater.eof:
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                return None
            pending = inflater.unconsumed_tail
    except zlib.error as error:
        raise _Undecodable(str(error)) from error
    if not inflater.eof:
        msg = "the compressed data ends too soon"
        raise _Undecodable(msg)
    if inflater.unused_data:
        msg = "data follows the end of the compressed stream"
        raise _Undecodable(msg)
    return bytes(out)


def _abandon(request: web.Request) -> None:
    """Read no more of this body: the connection closes right after the answer.

    Without it aiohttp lingers after the response, reading what is left of the
    body: for up to 10 s from a client that stalls, and, for a body that does
    not decode, only to meet the decoding error again and log it as unhandled.
    """
    request.content.feed_eof()


def _transport_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def client_left(request: web.Request, error: BaseException) -> bool:
    """Whether `error` is the client having gone away rather than a failure of ours."""
    if isinstance(error, ClientGone):
        return True
    return isinstance(error, ConnectionError) and _transport_gone(request)


async def expect_continue(request: web.Request) -> None:
    """Answer `Expect: 100-continue` only for a body we will read.

    aiohttp's default handler invites every body; this one stays silent when
    the head alone refuses the request, and the edge then answers 413 or 415
    without reading a byte of it. Any other expectation is left to the edge too.
    """
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return
    if refuse_early(request, limits(request.app)) is not None:
        return
    if request.version >= (1, 1):
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def install_expect_handler(app: web.Application) -> None:
    """Make `expect_continue` the `Expect` handler of every route of `app`.

    aiohttp takes it per route (`expect_handler=` when a route is added) and
    offers no application-wide setting; setting it here keeps the route table
    free of transport details.
    """
    for resource in app.router.resources():
        for route in resource:
            route._expect_handler = expect_continue
