"""A run's event feed: the item shape and the LISTEN hub that wakes live readers.

The store NOTIFYs channel `events` with the stream id after every append. One
connection per server process LISTENs there (not one per client, which would
exhaust the database's connections) and fans each notification out to the
readers subscribed to that stream. A notification is only a hint: readers
always re-read the stream after their last version, and also poll, so a missed
NOTIFY (a dropped LISTEN connection, a burst) delays an event, never loses it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import msgspec
import structlog
from aiohttp import web

from events import reads
from events.retry import Backoff, describe_error
from events.types import Metadata, RecordedEvent

log = structlog.get_logger(__name__)

CHANNEL = "events"
# After the LISTEN connection broke: the first wait before listening again, and the longest.
_RELISTEN_FIRST_S = 0.25
_RELISTEN_MOST_S = 5.0
_UNLISTEN_S = 5.0
TERMINAL_TYPES = frozenset({"run.completed", "run.cancelled", "run.errored"})

_encode = msgspec.json.Encoder().encode


class RunEventItem(msgspec.Struct, frozen=True, kw_only=True):
    """One event of a run's stream, as the feed answers it (JSON page and SSE alike)."""

    version: int
    type: str
    event_id: uuid.UUID
    # The event's own fields (its `type` is above).
    data: dict[str, Any]
    metadata: Metadata
    occurred_at: datetime
    recorded_at: datetime


def item_of(event: RecordedEvent) -> RunEventItem:
    """The feed item of a stored event."""
    data = msgspec.to_builtins(event.event)
    # The tag is the item's `type`; repeating it inside `data` says nothing new.
    data.pop("type", None)
    return RunEventItem(
        version=event.version,
        type=event.type,
        event_id=event.event_id,
        data=data,
        metadata=event.metadata,
        occurred_at=event.occurred_at,
        recorded_at=event.recorded_at,
    )


def sse_message(event: RecordedEvent) -> bytes:
    """One Server-Sent Events message: the version as its id, the type as its event name."""
    # msgspec's JSON never contains a raw newline, so the data fits on one line.
    return (
        f"id: {event.version}\nevent: {event.type}\ndata: ".encode()
        + _encode(item_of(event))
        + b"\n\n"
    )


async def read_page(
    pool: asyncpg.Pool, stream_id: str, after: int, limit: int
) -> tuple[list[RecordedEvent], bool]:
    """Up to `limit` events with `version > after`, and whether more follow."""
    return await reads.stream_page(pool, stream_id, after, limit)


class FeedHub:
    """One LISTEN connection on channel `events`, fanned out to subscribers by stream id.

    The connection is taken from the app's pool on first use and held until
    `close` (so the service's connection budget stays the pool's). If it
    breaks (PostgreSQL restarted), the hub gives it back to the pool and, while
    readers are subscribed, takes a new one, retrying with a growing delay;
    meanwhile readers poll, and every reader is woken once it listens again.
    The pool comes with the first reader, not at construction, because the route
    table (and so this hub) is also built for apps without a database.
    """

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._subscribers: dict[str, set[asyncio.Event]] = {}
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._relisten_task: asyncio.Task[None] | None = None

    def subscribe(self, stream_id: str) -> asyncio.Event:
        """An event set whenever `stream_id` may have new events; `unsubscribe` it after."""
        wake = asyncio.Event()
        self._subscribers.setdefault(stream_id, set()).add(wake)
        return wake

    def unsubscribe(self, stream_id: str, wake: asyncio.Event) -> None:
        """Stop waking `wake` (idempotent)."""
        waiting = self._subscribers.get(stream_id)
        if waiting is None:
            return
        waiting.discard(wake)
        if not waiting:
            del self._subscribers[stream_id]

    @asynccontextmanager
    async def subscription(
        self, pool: asyncpg.Pool, stream_id: str
    ) -> AsyncIterator[asyncio.Event]:
        """`subscribe` for the duration of the block, whatever ends it."""
        wake = self.subscribe(stream_id)
        try:
            await self.ensure_listening(pool)
            yield wake
        finally:
            self.unsubscribe(stream_id, wake)

    def subscriber_count(self) -> int:
        """How many readers are subscribed now (to every stream)."""
        return sum(len(waiting) for waiting in self._subscribers.values())

    async def ensure_listening(self, pool: asyncpg.Pool) -> None:
        """LISTEN, unless already listening; a failure only logs (readers poll)."""
        if self._closed or _alive(self._conn):
            return
        async with self._lock:
            if self._closed or _alive(self._conn):
                return
            await self._release()
            conn: asyncpg.Connection | None = None
            try:
                conn = await pool.acquire()
                await conn.add_listener(CHANNEL, self._notified)
                conn.add_termination_listener(self._lost)
            except BaseException as error:
                # Whatever ended it (a cancellation too: `close` cancels a
                # relisten in flight), the connection goes back, or the pool
                # could never close; closed, since it may be listening already.
                if conn is not None:
                    conn.terminate()
                    await pool.release(conn)
                if not isinstance(error, OSError | asyncpg.PostgresError | asyncpg.InterfaceError):
                    raise
                log.warning("feed_listen_failed", error=str(error))
                return
            self._pool, self._conn = pool, conn

    def _lost(self, _conn: asyncpg.Connection) -> None:
        """The LISTEN connection broke: listen again in the background."""
        if self._closed:
            return
        log.warning("feed_listen_lost", subscribers=self.subscriber_count())
        if self._relisten_task is None or self._relisten_task.done():
            self._relisten_task = asyncio.get_running_loop().create_task(self._relisten())

    async def _relisten(self) -> None:
        backoff = Backoff(_RELISTEN_FIRST_S, _RELISTEN_MOST_S)
        while not self._closed and self._pool is not None:
            if not self._subscribers:
                # Nobody waits: give the broken connection back; the next reader listens.
                async with self._lock:
                    await self._release()
                return
            try:
                await self.ensure_listening(self._pool)
            except Exception as error:  # whatever it is: try again after the delay
                log.warning("feed_listen_failed", error=describe_error(error))
            if _alive(self._conn):
                log.info("feed_listening_again")
                # A notification may have been missed meanwhile: everyone re-reads.
                for waiting in self._subscribers.values():
                    for wake in waiting:
                        wake.set()
                return
            await asyncio.sleep(backoff.next())

    def _notified(self, _conn: asyncpg.Connection, _pid: int, _channel: str, payload: str) -> None:
        for wake in self._subscribers.get(payload, ()):
            wake.set()

    async def _release(self) -> None:
        conn, self._conn = self._conn, None
        pool = self._pool
        if conn is None or pool is None:
            return
        if not _alive(conn):
            # It broke, and the pool took it back then: nothing to undo or release.
            return
        try:
            # Bounded: a connection that stopped answering must not hang a shutdown.
            async with asyncio.timeout(_UNLISTEN_S):
                conn.remove_termination_listener(self._lost)
                await conn.remove_listener(CHANNEL, self._notified)
                # Pooled connections are released without a reset query
                # (service.db): UNLISTEN here, or the next user of this
                # connection would keep receiving notifications.
                await conn.execute("UNLISTEN *")
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
            log.warning("feed_unlisten_failed", error=str(error) or type(error).__name__)
            conn.terminate()  # it may still be listening: never hand it to anyone else
        finally:
            await pool.release(conn)

    async def close(self) -> None:
        """Stop listening and give the connection back to the pool; wake every reader."""
        self._closed = True
        if self._relisten_task is not None:
            self._relisten_task.cancel()
            await asyncio.gather(self._relisten_task, return_exceptions=True)
        async with self._lock:
            await self._release()
        for waiting in self._subscribers.values():
            for wake in waiting:
                wake.set()


def _alive(conn: asyncpg.Connection | None) -> bool:
    """Whether `conn` (a pooled connection) is still open and still ours."""
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        # When a pooled connection breaks, the pool takes it back at once and
        # every later call on it raises "released back to the pool".
        return False


FEED = web.AppKey("feed", FeedHub)


def install(app: web.Application) -> None:
    """Give `app` its hub, closed when the app cleans up (before the pool closes)."""
    app[FEED] = FeedHub()

    async def close(app: web.Application) -> None:
        await app[FEED].close()

    app.on_cleanup.append(close)
