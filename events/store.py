"""The event store: append with an expected version, read a stream, read everything.

Every stream is `category-id` (a run's is `run-<run_id>`). Versions start at 1
and have no gaps. `global_position` is unique but is *not* the feed's order; see
`read_all` for the one order in which every reader reads everything, without
losing or repeating an event, each stream's versions ascending.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any, NamedTuple

import asyncpg
import msgspec
import structlog

from events import codec
from events.errors import (
    AppendOnlyError,
    ConcurrencyError,
    DuplicateEventIdError,
    IdempotencyConflictError,
    StaleTransactionError,
)
from events.types import EVENT_TYPES, Metadata, NewEvent, RecordedEvent

WRONG_EXPECTED_VERSION = "EV001"
IDEMPOTENCY_CONFLICT = "EV002"
APPEND_ONLY = "EV003"
STALE_TRANSACTION = "EV004"
DUPLICATE_EVENT_ID = "EV005"

# How many times an append on the store's own connection is tried when a newer
# transaction appended to the stream first (each try is a new transaction).
_STALE_TRIES = 3

log = structlog.get_logger(__name__)

_metadata_encoder = msgspec.json.Encoder()
_metadata_decoder = msgspec.json.Decoder(Metadata)
_NO_METADATA = Metadata()
# Each event type's schema version, as `codec.decode` checks it, read once: the
# classes' `schema_version` does not change at run time, and looking it up on the
# class for every event was a measurable share of a short read (BENCHMARKS.md).
_CURRENT_VERSIONS = {event_type: cls.schema_version for event_type, cls in EVENT_TYPES.items()}


class Checkpoint(NamedTuple):
    """A place in the feed: the last `(transaction_id, global_position)` read."""

    transaction_id: int
    global_position: int


ORIGIN = Checkpoint(0, 0)

_APPEND = """
SELECT global_position, version
  FROM append_events($1, $2, $3, $4, $5, $6, $7, $8)
"""

# The fast path of an append at an expected version: one plain statement, no
# PL/pgSQL. It moves the stream's row from the expected version (or creates it,
# for version 0) and inserts the events after it. When the stream is not at the
# expected version, when an event id is stored already, or when a newer
# transaction appended last, it writes nothing and returns no row;
# `append_events()` then answers (an idempotent retry, EV001, EV002 or EV004). A
# concurrent appender waits for the stream row's lock, then re-checks its
# conditions against the committed row.
_EVENT_ROWS = """
INSERT INTO events (stream_id, version, type, schema_version, data, metadata, event_id,
                    occurred_at)
SELECT $1, s.base + i.ord, i.type, i.schema_version, i.data, i.metadata, i.event_id,
       i.occurred_at
  FROM s, unnest($4::text[], $5::integer[], $6::json[], $7::json[], $3::uuid[],
                 $8::timestamptz[])
          WITH ORDINALITY AS i(type, schema_version, data, metadata, event_id, occurred_at, ord)
RETURNING global_position, version
"""
# Up to this many events, the fast path sends each event's fields as scalar
# parameters in a VALUES list: one statement per count, prepared once per
# connection. For a short batch that costs PostgreSQL less than unnesting six
# arrays (each unnest fills a tuplestore) and the client less than encoding
# them (asyncpg checks every array element against three ABCs); BENCHMARKS.md.
# Longer batches (a runner's flush) unnest arrays: one statement for any count.
_MOST_AS_VALUES = 16


def _moving_the_stream(count: str, event_ids: str) -> tuple[str, str]:
    """The stream-row half of the fast path, `count` events on: (at version $2, new).

    It moves the stream only when none of `event_ids` (a relation `x(id)`) is
    stored (an idempotent retry, or a conflict, is `append_events()`'s to
    answer: writing nothing here keeps the caller's transaction usable) and
    when the stream's last append came from this transaction or an older one
    (events/sql/0005).
    """
    # One index probe per id, as a LATERAL ... LIMIT 1: a plain `event_id =
    # ANY(...)` got, from a new (small) table, a cached generic plan that scanned
    # every event, and kept it as the table grew.
    none_stored = (
        f"NOT EXISTS (SELECT FROM {event_ids} CROSS JOIN LATERAL"
        " (SELECT FROM events WHERE event_id = x.id LIMIT 1) AS stored)"
    )
    at_version = f"""
WITH s AS (
    UPDATE streams SET version = version + {count}, last_transaction_id = pg_current_xact_id()
     WHERE stream_id = $1 AND version = $2::bigint
       AND last_transaction_id <= pg_current_xact_id() AND {none_stored}
    RETURNING $2::bigint AS base
)"""
    new_stream = f"""
WITH s AS (
    INSERT INTO streams (stream_id, version, last_transaction_id)
    SELECT $1, {count}, pg_current_xact_id() WHERE {none_stored}
        ON CONFLICT (stream_id) DO NOTHING
    RETURNING $2::bigint AS base
)"""
    return at_version, new_stream


_FAST_APPEND, _FAST_CREATE = (
    head + _EVENT_ROWS
    for head in _moving_the_stream("cardinality($3::uuid[])", "unnest($3::uuid[]) AS x(id)")
)


@functools.cache
def _fast_as_values(count: int, new_stream: bool) -> str:
    """The fast path for `count` (at most `_MOST_AS_VALUES`) events, whose fields are
    the parameters from $3 on, six per event (`_values_args`)."""
    rows = ", ".join(
        f"({n + 1}, ${3 + 6 * n}::text, ${4 + 6 * n}::integer, ${5 + 6 * n}::json,"
        f" ${6 + 6 * n}::json, ${7 + 6 * n}::uuid, ${8 + 6 * n}::timestamptz)"
        for n in range(count)
    )
    event_ids = "(VALUES " + ", ".join(f"(${7 + 6 * n}::uuid)" for n in range(count)) + ") AS x(id)"
    at_version, new = _moving_the_stream(str(count), event_ids)
    return f"""{new if new_stream else at_version}
INSERT INTO events (stream_id, version, type, schema_version, data, metadata, event_id,
                    occurred_at)
SELECT $1, s.base + i.ord, i.type, i.schema_version, i.data, i.metadata, i.event_id,
       i.occurred_at
  FROM s, (VALUES {rows}) AS i(ord, type, schema_version, data, metadata, event_id, occurred_at)
RETURNING global_position, version
"""


_NOTIFY = """
SELECT set_config('synchronous_commit', 'off', true), count(pg_notify('events', stream_id))
  FROM unnest($1::text[]) AS stream_id
"""

# A stream's reader knows its stream id: its rows leave it out (STREAM_COLUMNS).
STREAM_COLUMNS = """
version, global_position, transaction_id, event_id, type, schema_version,
data, metadata, occurred_at, recorded_at
"""
_COLUMNS = "stream_id, " + STREAM_COLUMNS

_READ_STREAM = f"""
SELECT {STREAM_COLUMNS} FROM events
 WHERE stream_id = $1 AND version >= $2
 ORDER BY version
"""

_READ_STREAM_PAGE = _READ_STREAM + " LIMIT $3"

# The feed's order. An identity value is drawn when a row is inserted but
# becomes visible when its transaction commits, so positions commit out of
# order: a reader that only remembers "the highest position seen" skips,
# forever, a transaction that drew a lower position and committed later.
# Instead, read only rows written by transactions older than the oldest
# transaction still running (`pg_snapshot_xmin` of our snapshot): every such
# transaction has finished, so no row can ever appear below that horizon again.
# Ordered by (transaction_id, global_position), that prefix only grows, and a
# checkpoint of that pair is exact. It is one order for every reader, but not
# true commit order: a transaction gets its id at its first write. Appends keep
# each stream's versions ascending in it: an append from a transaction older
# than the stream's last appender is refused (events/sql/0005). Writers never
# wait; a reader waits at most for the oldest open transaction (bounded by
# idle_in_transaction_session_timeout). A gap is never skipped on a timer.
_READ_ALL = f"""
SELECT {_COLUMNS} FROM events
 WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
   AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
 ORDER BY transaction_id, global_position
 LIMIT $3
"""


def recorded_events(
    stream_ids: Iterable[str], rows: Iterable[Sequence[Any]]
) -> list[RecordedEvent]:
    """Stored rows of `STREAM_COLUMNS` (in its order), from these streams, as typed events.

    Every read of the store comes through here (`repeat(stream_id)` for one
    stream's rows), so the common case costs no call per event beyond
    msgspec's own: a payload at its type's current schema version is decoded
    directly (`codec.decode`'s check, made inline; it upcasts the others), empty
    metadata is shared, and the envelope is built positionally, in one list
    comprehension (a generator and keyword arguments cost a short read a
    visible share of its client CPU). A scan converts its pages a few rows at a time
    (`_decoded_in_turn`).
    """
    return [
        RecordedEvent(
            stream_id,
            version,
            global_position,
            transaction_id,
            event_id,
            schema_version,
            occurred_at,
            recorded_at,
            codec.decode_current(data)
            if _CURRENT_VERSIONS.get(event_type) == schema_version
            else codec.decode(event_type, schema_version, data),
            _NO_METADATA if metadata == b"{}" else _metadata(metadata),
        )
        for stream_id, (
            version,
            global_position,
            transaction_id,
            event_id,
            event_type,
            schema_version,
            data,
            metadata,
            occurred_at,
            recorded_at,
        ) in zip(stream_ids, rows, strict=False)  # stream_ids may be an endless repeat()
    ]


def _events_of_all(rows: Sequence[asyncpg.Record]) -> list[RecordedEvent]:
    """Rows of `_COLUMNS` (the stream id, then `STREAM_COLUMNS`) as typed events."""
    return recorded_events((row[0] for row in rows), (row[1:] for row in rows))


# How many rows of a page a scan converts at once. A scan that consumes each
# event as it comes keeps only these alive: decoding a whole page at once cost
# a commit-order scan more CPU, most of it the garbage collector's
# (`run.created` payloads hold lists and dicts).
_DECODED_AT_ONCE = 32


def _decoded_in_turn(
    rows: Sequence[asyncpg.Record],
    convert: Callable[[Sequence[asyncpg.Record]], list[RecordedEvent]],
) -> Iterator[RecordedEvent]:
    for start in range(0, len(rows), _DECODED_AT_ONCE):
        yield from convert(rows[start : start + _DECODED_AT_ONCE])


_seen_metadata: dict[bytes, Metadata] = {}


def _metadata(raw: bytes) -> Metadata:
    """Decoded metadata; the same bytes (a request's, a runner's) decode once."""
    found = _seen_metadata.get(raw)
    if found is None:
        if len(_seen_metadata) >= 4096:
            _seen_metadata.clear()
        found = _seen_metadata[raw] = _metadata_decoder.decode(raw)
    return found


def checkpoint_of(event: RecordedEvent) -> Checkpoint:
    """The feed's checkpoint just after an event."""
    return Checkpoint(event.transaction_id, event.global_position)


class EventStore:
    """Append-only streams of events in PostgreSQL.

    Args:
        pool: an asyncpg pool whose connections were set up by `init_connection`.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.notifier = Notifier(pool)

    def announce(self, *stream_ids: str) -> None:
        """Wake the followers of these streams, once the appends to them have committed.

        `append` without `conn` announces its own appends. A caller that appends
        inside its own transaction calls this after the commit (never before: a
        follower woken early reads nothing new and waits for its next poll).
        """
        self.notifier.wake(stream_ids)

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | None,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> list[int]:
        """Append events to a stream atomically; return their global positions.

        Args:
            stream_id: the stream, e.g. `run-wftestrun_x`.
            events: the events, in order; at least one.
            expected_version: the stream's current version (0: it must not exist
                yet), or None to append at the end whatever it is.
            conn: a connection inside the caller's transaction, so that the
                append and the caller's other writes (the inline projection)
                commit or roll back together. Without it the store uses a
                connection of its pool and its own transaction.

        Raises:
            ConcurrencyError: the stream is not at `expected_version`.
            StaleTransactionError: (a ConcurrencyError) the stream's last append
                came from a transaction newer than the caller's (one that drew
                its transaction id later): retry in a new transaction. Appends
                on the store's own connection retry it themselves, a few times.
            IdempotencyConflictError: some of the event ids are stored already,
                but this is not the same append (see below); nothing is written.
            DuplicateEventIdError: the same event id twice in `events`.

        Appending event ids that are already stored is a retry, answered with
        their original positions and writing nothing, when it is the same
        append: the same stream, all of its events (not a part of them) at
        consecutive versions in the order given, with the same type, schema
        version, payload and metadata
        (`occurred_at` is not compared). The expected version is not checked
        then, so a retry at the stream's current version answers too, and
        through `conn` it leaves the caller's transaction usable.
        """
        if not events:
            msg = "append needs at least one event"
            raise ValueError(msg)
        if len(events) > 1 and len({new.event_id for new in events}) != len(events):
            raise DuplicateEventIdError(_duplicate_message(stream_id, events))
        if conn is not None:
            return await self._append(conn, stream_id, expected_version, events)
        async with self.pool.acquire() as own:
            for tries_left in range(_STALE_TRIES - 1, -1, -1):
                try:
                    positions = await self._append(own, stream_id, expected_version, events)
                    break
                except StaleTransactionError:
                    # Our statement drew its transaction id before a concurrent
                    # append to the stream drew its own and committed: a new
                    # transaction draws a newer one.
                    if not tries_left:
                        raise
                except ConcurrencyError:
                    # A concurrent append of these very events may have won the
                    # race: the retry answers their positions, or fails again.
                    if not await _any_stored(own, events):
                        raise
                    positions = await self._append(
                        own, stream_id, expected_version, events, fast=False
                    )
                    break
        self.notifier.wake((stream_id,))
        return positions

    async def _append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected_version: int | None,
        events: Sequence[NewEvent],
        *,
        fast: bool = True,
    ) -> list[int]:
        try:
            rows = []
            if fast and expected_version is not None:
                if len(events) <= _MOST_AS_VALUES:
                    rows = await conn.fetch(
                        _fast_as_values(len(events), expected_version == 0),
                        *_values_args(stream_id, events, expected_version),
                    )
                else:
                    many = _FAST_CREATE if expected_version == 0 else _FAST_APPEND
                    rows = await conn.fetch(
                        many, *_append_args(stream_id, events, expected_version)
                    )
            if not rows:
                rows = await conn.fetch(_APPEND, *_append_args(stream_id, events, expected_version))
        except asyncpg.UniqueViolationError as error:
            # events_pkey is (stream_id, version) (events/sql/0004): a version
            # taken by a concurrent appender; events_event_id_key: these events.
            if error.constraint_name in ("events_pkey", "events_event_id_key"):
                raise ConcurrencyError(stream_id, expected_version, str(error)) from error
            raise
        except asyncpg.PostgresError as error:
            translated = _translate(error, stream_id, expected_version)
            if translated is None:
                raise
            raise translated from error
        return [row["global_position"] for row in rows]

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 0,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """The events of one stream with `version >= from_version`, in version order."""
        return await fetch_stream(conn or self.pool, stream_id, from_version)

    async def iterate_stream(
        self, stream_id: str, from_version: int = 0, page_size: int = 1000
    ) -> AsyncGenerator[RecordedEvent, None]:
        """The events of one stream with `version >= from_version`, page by page.

        For streams too long to hold at once (audits): memory stays one page.
        """
        while page := await self.pool.fetch(_READ_STREAM_PAGE, stream_id, from_version, page_size):
            for event in _decoded_in_turn(
                page, lambda rows: recorded_events(repeat(stream_id), rows)
            ):
                yield event
            if len(page) < page_size:
                return
            from_version = page[-1]["version"] + 1

    async def read_all(
        self,
        after: Checkpoint = ORIGIN,
        limit: int = 1000,
        *,
        conn: asyncpg.Connection | None = None,
    ) -> list[RecordedEvent]:
        """Up to `limit` committed events after a checkpoint, in the feed's order.

        The feed's order is `(transaction_id, global_position)`: the same for
        every reader, with each committed event exactly once, no rolled-back
        one, and each stream's versions ascending. It is not true commit order
        (a transaction gets its id at its first write, not at its commit).

        Feed the checkpoint of the last event returned (`checkpoint_of`) to the
        next call. An empty list means: nothing more is committed *and final*
        yet; poll again later (or after a NOTIFY on channel `events`). An event
        is returned once every transaction older than it has finished, so the
        sequence never changes behind a checkpoint: a reader waits at most for
        the oldest transaction still open.

        The horizon is the whole PostgreSQL cluster's oldest running transaction
        (transaction ids are cluster-wide): a long transaction in another
        database of the same cluster delays, but never breaks, this feed.
        """
        if conn is not None:
            rows = await conn.fetch(_READ_ALL, *after, limit)
        else:
            rows = await self.pool.fetch(_READ_ALL, *after, limit)
        return _events_of_all(rows)

    async def iterate_all(
        self, after: Checkpoint = ORIGIN, page_size: int = 1000
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event after a checkpoint that is final now, in the feed's order, by page.

        The next page is read (on another pooled connection) while this one is
        decoded and consumed: the same pages as calling `read_all` in a loop.
        """
        rows = await self.pool.fetch(_READ_ALL, *after, page_size)
        ahead: asyncio.Future[list[asyncpg.Record]] | None = None
        try:
            while rows:
                if len(rows) == page_size:
                    last = rows[-1]
                    after = Checkpoint(last["transaction_id"], last["global_position"])
                    ahead = asyncio.ensure_future(self.pool.fetch(_READ_ALL, *after, page_size))
                for event in _decoded_in_turn(rows, _events_of_all):
                    yield event
                if ahead is None:
                    return
                rows, ahead = await ahead, None
        finally:
            if ahead is not None and not ahead.done():
                ahead.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ahead

    async def stream_version(self, stream_id: str) -> int:
        """The stream's current version (0 when it does not exist)."""
        version = await self.pool.fetchval(
            "SELECT version FROM streams WHERE stream_id = $1", stream_id
        )
        return int(version or 0)


class Notifier:
    """Wake-ups on channel `events`, sent after the appends commit, coalesced.

    A NOTIFY inside the appending transaction takes PostgreSQL's cluster-wide
    notify lock at commit and holds it through the WAL flush, which serialises
    every appender's commit. Here at most one NOTIFY transaction per process is
    in flight; it names every stream announced meanwhile and commits without
    waiting for the WAL flush. A wake-up is only a hint: followers re-read from
    their checkpoint and also poll, so a lost one (a crash right after a commit)
    delays an event, never loses it.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: set[str] = set()
        self._sending: asyncio.Task[None] | None = None

    def wake(self, stream_ids: Iterable[str]) -> None:
        """Announce these streams as soon as possible (without waiting)."""
        self._pending.update(stream_ids)
        if self._pending and (self._sending is None or self._sending.done()):
            self._sending = asyncio.get_running_loop().create_task(self._send())

    async def flush(self) -> None:
        """Wait until every wake-up asked for so far has been sent (or has failed)."""
        while self._sending is not None and not self._sending.done():
            await asyncio.shield(self._sending)

    async def _send(self) -> None:
        while self._pending:
            streams = sorted(self._pending)
            self._pending.clear()
            try:
                await self._pool.execute(_NOTIFY, streams)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as error:
                # The followers' poll covers it.
                log.debug("notify_failed", error=str(error), streams=len(streams))


async def fetch_stream(
    conn: asyncpg.Connection | asyncpg.Pool, stream_id: str, from_version: int = 0
) -> list[RecordedEvent]:
    """`EventStore.read_stream` on a given connection (for callers inside a transaction)."""
    rows = await conn.fetch(_READ_STREAM, stream_id, from_version)
    return recorded_events(repeat(stream_id), rows)


def _fields(new: NewEvent) -> tuple[str, int, bytes, bytes, Any, datetime]:
    """What an append stores of an event: type, schema version, payload, metadata, id, time."""
    event_type, schema_version, payload = codec.encode(new.event)
    metadata = _metadata_encoder.encode(new.metadata)
    return event_type, schema_version, payload, metadata, new.event_id, new.occurred_at


def _append_args(
    stream_id: str, events: Sequence[NewEvent], expected_version: int | None
) -> tuple[Any, ...]:
    """`append_events()`'s and the unnest fast path's parameters: a column array each."""
    types, versions, data, metadata, ids, times = (
        list(column) for column in zip(*map(_fields, events), strict=True)
    )
    return stream_id, expected_version, ids, types, versions, data, metadata, times


def _values_args(stream_id: str, events: Sequence[NewEvent], expected_version: int) -> list[Any]:
    """`_fast_as_values`' parameters: six per event, in its order."""
    args: list[Any] = [stream_id, expected_version]
    for new in events:
        args += _fields(new)
    return args


async def _any_stored(conn: asyncpg.Connection, events: Sequence[NewEvent]) -> bool:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT FROM unnest($1::uuid[]) AS x(id) CROSS JOIN LATERAL"
        " (SELECT FROM events WHERE event_id = x.id LIMIT 1) AS stored)",
        [new.event_id for new in events],
    )
    return bool(found)


def _duplicate_message(stream_id: str, events: Sequence[NewEvent]) -> str:
    seen: set[Any] = set()
    for number, new in enumerate(events, 1):
        if new.event_id in seen:
            return (
                f"Duplicate event id in one append: {new.event_id} (number {number}"
                f" of the append, Stream: {stream_id})"
            )
        seen.add(new.event_id)
    return f"Duplicate event id in one append (Stream: {stream_id})"


def _translate(
    error: asyncpg.PostgresError, stream_id: str, expected_version: int | None
) -> Exception | None:
    sqlstate = getattr(error, "sqlstate", None)
    message = getattr(error, "message", str(error))
    if sqlstate == WRONG_EXPECTED_VERSION:
        return ConcurrencyError(stream_id, expected_version, message)
    if sqlstate == IDEMPOTENCY_CONFLICT:
        return IdempotencyConflictError(message)
    if sqlstate == STALE_TRANSACTION:
        return StaleTransactionError(stream_id, expected_version, message)
    if sqlstate == DUPLICATE_EVENT_ID:
        return DuplicateEventIdError(message)
    if sqlstate == APPEND_ONLY:
        return AppendOnlyError(message)
    return None
