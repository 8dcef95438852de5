"""`/v1/workflows/tests/runs/{run_id}/events`: a run's event stream, as JSON pages or live SSE."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

import asyncpg
import structlog
from aiohttp import web

from events import reads as events_reads
from events.streams import stream_of
from service.http import feed
from service.http.errors import ValidationFailedError
from service.http.handlers.common import POOL, STORE, organisation, page_response
from service.http.middleware import REQUEST_ID
from service.models import ListMetadata
from service.runs import reads
from service.runs.reads import run_not_found

log = structlog.get_logger(__name__)

DEFAULT_LIMIT = 100
# The largest stream version there can be (a PostgreSQL bigint).
MAX_VERSION = 2**63 - 1
MAX_LIMIT = 1000
# A comment line this often while idle, so proxies and clients do not time the stream out.
HEARTBEAT_S = 15.0
# Re-read the stream at least this often: a missed NOTIFY only delays an event.
POLL_S = 1.0

async def run_events(request: web.Request) -> web.StreamResponse:
    """`GET /v1/workflows/tests/runs/{run_id}/events`: JSON pages by version, or SSE."""
    run_id = request.match_info["run_id"]
    pool = request.app[POOL]
    if not await reads.run_exists(pool, organisation(request), run_id):
        raise run_not_found(run_id)
    if "text/event-stream" in request.headers.get("Accept", ""):
        return await _stream(request, pool, stream_of(run_id))
    after = _version(request.query, "after", default=0, minimum=0, maximum=MAX_VERSION)
    limit = _version(request.query, "limit", default=DEFAULT_LIMIT, minimum=1, maximum=MAX_LIMIT)
    events, more = await feed.read_page(pool, stream_of(run_id), after, limit)
    after_cursor = str(events[-1].version) if events and more else None
    return page_response(
        [feed.item_of(event) for event in events], ListMetadata(before=None, after=after_cursor)
    )


def _version(
    values: Mapping[str, str], name: str, *, default: int, minimum: int, maximum: int | None
) -> int:
    """An integer query value within bounds, or a 422 naming it."""
    raw = values.get(name)
    if raw is None or raw == "":
        return default
    # Plain digits only: Python's int() also takes `1_0`, spaces and other scripts' digits.
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 20 else None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise ValidationFailedError.single(
            ["query", name], f"{name} must be an integer {bounds}", "value_error"
        )
    return value


def _resume_after(request: web.Request) -> int:
    """Where an SSE client resumes: `Last-Event-ID` (a reconnect), else query `after`."""
    header = request.headers.get("Last-Event-ID")
    if header is not None and header.strip():
        raw = header.strip()
        value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 20 else -1
        if not 0 <= value <= MAX_VERSION:
            raise ValidationFailedError.single(
                ["header", "Last-Event-ID"], "Last-Event-ID must be a version (>= 0)", "value_error"
            )
        return value
    return _version(request.query, "after", default=0, minimum=0, maximum=MAX_VERSION)


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def _stream(request: web.Request, pool: asyncpg.Pool, stream_id: str) -> web.StreamResponse:
    """Every event after the client's last one, then live ones, until the run is terminal.

    Holds no database connection while waiting: each read borrows one from the
    pool and gives it back. The hub's wake-up is only a hint; every wake-up and
    every poll timeout re-reads from the last version sent.
    """
    last = _resume_after(request)
    store = request.app[STORE]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            # The edge sets this after the handler returns: too late for a stream.
            "X-Request-Id": request[REQUEST_ID],
        }
    )
    # A client resuming after the terminal event has everything: end at once.
    already_over = last > 0 and await events_reads.type_seen(
        pool, stream_id, last, list(feed.TERMINAL_TYPES)
    )
    await response.prepare(request)
    if already_over:
        await response.write_eof()
        return response
    try:
        async with request.app[feed.FEED].subscription(pool, stream_id) as wake:
            idle_since = time.monotonic()
            while not _disconnected(request):
                # Clear before reading: a NOTIFY that lands during the read
                # wakes the next wait instead of being forgotten.
                wake.clear()
                chunk, over = bytearray(), False
                for event in await store.read_stream(stream_id, last + 1):
                    chunk += feed.sse_message(event)
                    last = event.version
                    if event.type in feed.TERMINAL_TYPES:
                        over = True
                        break
                if chunk:
                    await response.write(bytes(chunk))
                    idle_since = time.monotonic()
                if over:
                    await response.write_eof()
                    return response
                quiet = time.monotonic() - idle_since
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        wake.wait(), timeout=max(0.0, min(POLL_S, HEARTBEAT_S - quiet))
                    )
                if time.monotonic() - idle_since >= HEARTBEAT_S:
                    await response.write(b": keep-alive\n\n")
                    idle_since = time.monotonic()
    except ConnectionResetError:
        # The client went away mid-write; leaving the block released the subscription.
        log.info("event_stream_disconnected", stream_id=stream_id, last_version=last)
    except asyncio.CancelledError:
        # The server is stopping (or cancels on disconnect): the subscription is
        # released by the block; cancellation must still propagate.
        log.info("event_stream_cancelled", stream_id=stream_id, last_version=last)
        raise
    except (
        OSError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.exceptions.InternalClientError,
    ) as error:
        # The database went away (or a pooled connection broke under a restart).
        # The headers are sent: an error response is impossible, so end the
        # stream; the client reconnects with Last-Event-ID and loses nothing.
        log.warning("event_stream_failed", stream_id=stream_id, error=str(error))
    return response
