"""Appending to the event store: expected versions, races, idempotency, immutability."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import msgspec
import pytest

from events import codec
from events.connection import _TIMESTAMPS
from events.errors import ConcurrencyError, IdempotencyConflictError
from events.store import EventStore
from events.types import Metadata, NewEvent, RunCancelled, RunCompleted, TestStarted

LOCK_WAITERS = """
SELECT count(*) FROM pg_stat_activity
 WHERE datname = current_database() AND wait_event_type = 'Lock'
"""


class Rollback(Exception):
    """Raised inside a caller's transaction to roll it back."""


def started(label: str) -> NewEvent:
    """A new TestStarted event with a fresh event id."""
    return NewEvent(event=TestStarted(result_id=f"result-{label}", test_id=f"test-{label}"))


def batch(count: int, label: str = "e") -> list[NewEvent]:
    """`count` new events with fresh ids."""
    return [started(f"{label}-{i}") for i in range(count)]


async def versions_of(pool: asyncpg.Pool, stream_id: str) -> list[int]:
    """The versions stored for a stream, read from the table, in order."""
    rows = await pool.fetch(
        "SELECT version FROM events WHERE stream_id = $1 ORDER BY version", stream_id
    )
    return [row["version"] for row in rows]


async def count_events(pool: asyncpg.Pool) -> int:
    """How many rows the events table holds."""
    return int(await pool.fetchval("SELECT count(*) FROM events"))


async def stored_streams_version(pool: asyncpg.Pool, stream_id: str) -> int | None:
    """`streams.version` of a stream, None when it has no row."""
    return await pool.fetchval("SELECT version FROM streams WHERE stream_id = $1", stream_id)


async def wait_for_lock_waiters(pool: asyncpg.Pool, count: int, within: float = 10) -> None:
    """Wait until `count` sessions of this database are blocked on a lock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        waiting = await pool.fetchval(LOCK_WAITERS)
        if waiting >= count:
            return
        if loop.time() > deadline:
            msg = f"expected {count} appenders blocked on a lock, saw {waiting}"
            raise AssertionError(msg)
        await asyncio.sleep(0.01)


# --- concurrent appenders ------------------------------------------------------


async def test_racing_appenders_on_one_stream_get_distinct_gapless_versions(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """16 writers race on one stream with read-version-then-append; none is lost or doubled.

    Every append that succeeds takes exactly the version after the one it read;
    the stream ends with versions 1..total and no gap or duplicate, only the
    successful attempts' events are stored, and the race really happened (some
    appends were refused with ConcurrencyError).
    """
    stream = "run-race"
    writers, per_writer = 16, 25
    go = asyncio.Event()
    won_versions: list[int] = []
    won_ids: list[uuid.UUID] = []
    conflicts = 0

    async def writer(number: int) -> None:
        nonlocal conflicts
        await go.wait()
        written = 0
        while written < per_writer:
            version = await store.stream_version(stream)
            new = started(f"{number}-{written}")
            try:
                await store.append(stream, [new], version)
            except ConcurrencyError:
                conflicts += 1
                continue
            won_versions.append(version + 1)
            won_ids.append(new.event_id)
            written += 1

    tasks = [asyncio.create_task(writer(number)) for number in range(writers)]
    go.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=45)

    total = writers * per_writer
    assert len(won_versions) == len(set(won_versions))
    assert sorted(won_versions) == list(range(1, total + 1))
    assert await versions_of(pool, stream) == list(range(1, total + 1))
    stored_ids = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM events")}
    assert stored_ids == set(won_ids)
    assert conflicts > 0, "the appenders never collided: the race did not happen"
    assert await stored_streams_version(pool, stream) == total
    assert await store.stream_version(stream) == total


@pytest.mark.parametrize("existing", [0, 3])
async def test_of_many_simultaneous_appends_at_one_expected_version_exactly_one_wins(
    store: EventStore, pool: asyncpg.Pool, existing: int
) -> None:
    """Twelve appends with the same expected version at once: one succeeds, eleven conflict."""
    stream = "run-same-expected"
    if existing:
        await store.append(stream, batch(existing, "setup"), 0)
    attempts = [batch(2, f"attempt-{n}") for n in range(12)]

    results = await asyncio.gather(
        *(store.append(stream, events, existing) for events in attempts),
        return_exceptions=True,
    )

    winners = [n for n, result in enumerate(results) if isinstance(result, list)]
    losers = [result for result in results if isinstance(result, ConcurrencyError)]
    assert len(winners) == 1
    assert len(losers) == 11
    assert await versions_of(pool, stream) == list(range(1, existing + 3))
    stored = await pool.fetch(
        "SELECT event_id FROM events WHERE version > $1 ORDER BY version", existing
    )
    assert [row["event_id"] for row in stored] == [e.event_id for e in attempts[winners[0]]]
    assert await store.stream_version(stream) == existing + 2


@pytest.mark.parametrize("existing", [0, 3])
async def test_appenders_blocked_behind_an_open_append_fail_once_it_commits(
    store: EventStore, pool: asyncpg.Pool, existing: int
) -> None:
    """Appenders waiting on an uncommitted append at their expected version all conflict.

    The first append holds its transaction open; the others really are blocked
    on its lock (checked in pg_stat_activity) and, when it commits, re-check
    the committed version and fail with the stream's new version in the message.
    """
    stream = "run-blocked"
    if existing:
        await store.append(stream, batch(existing, "setup"), 0)
    waiters = 10
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await store.append(stream, batch(1, "first"), existing, conn=conn)
            tasks = [
                asyncio.create_task(store.append(stream, batch(1, f"late-{n}"), existing))
                for n in range(waiters)
            ]
            await wait_for_lock_waiters(pool, waiters)
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()

    results = await asyncio.gather(*tasks, return_exceptions=True)

    expected_message = (
        f"Wrong expected version: {existing} (Stream: {stream}, Stream Version: {existing + 1})"
    )
    assert [type(result) for result in results] == [ConcurrencyError] * waiters
    assert {str(result) for result in results} == {expected_message}
    assert await versions_of(pool, stream) == list(range(1, existing + 2))


async def test_appenders_at_the_end_blocked_behind_an_open_append_follow_it(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Appends with expected_version None wait for an open append, then go after it."""
    stream = "run-blocked-any"
    await store.append(stream, batch(2, "setup"), 0)
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            await store.append(stream, batch(3, "first"), None, conn=conn)
            tasks = [
                asyncio.create_task(store.append(stream, batch(2, f"late-{n}"), None))
                for n in range(5)
            ]
            await wait_for_lock_waiters(pool, 5)
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()

    results = await asyncio.gather(*tasks)

    assert [len(positions) for positions in results] == [2] * 5
    assert await versions_of(pool, stream) == list(range(1, 16))
    assert await store.stream_version(stream) == 15


# --- expected_version semantics -----------------------------------------------


async def test_expected_version_zero_creates_a_new_stream(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Expected version 0 on a stream that does not exist creates it at versions 1..n."""
    events = batch(3)

    positions = await store.append("run-new", events, 0)

    rows = await pool.fetch(
        "SELECT global_position, version, event_id FROM events ORDER BY global_position"
    )
    assert [row["global_position"] for row in rows] == positions
    assert [row["version"] for row in rows] == [1, 2, 3]
    assert [row["event_id"] for row in rows] == [e.event_id for e in events]
    assert positions == sorted(positions)
    assert len(set(positions)) == 3
    assert await store.stream_version("run-new") == 3
    assert [r.event for r in await store.read_stream("run-new")] == [e.event for e in events]


async def test_expected_version_zero_on_an_existing_stream_fails(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Expected version 0 when the stream exists raises ConcurrencyError and writes nothing."""
    await store.append("run-a", batch(2), 0)

    with pytest.raises(ConcurrencyError) as caught:
        await store.append("run-a", batch(1, "again"), 0)

    expected = "Wrong expected version: 0 (Stream: run-a, Stream Version: 2)"
    assert expected == str(caught.value)
    assert caught.value.stream_id == "run-a"
    assert caught.value.expected_version == 0
    assert await versions_of(pool, "run-a") == [1, 2]
    assert await stored_streams_version(pool, "run-a") == 2


async def test_a_stale_expected_version_fails(store: EventStore, pool: asyncpg.Pool) -> None:
    """An expected version below the stream's version raises ConcurrencyError, writes nothing."""
    await store.append("run-a", batch(2), 0)
    await store.append("run-a", batch(1, "more"), 2)

    with pytest.raises(ConcurrencyError) as caught:
        await store.append("run-a", batch(1, "stale"), 2)

    expected = "Wrong expected version: 2 (Stream: run-a, Stream Version: 3)"
    assert expected == str(caught.value)
    assert caught.value.expected_version == 2
    assert await versions_of(pool, "run-a") == [1, 2, 3]
    assert await stored_streams_version(pool, "run-a") == 3


async def test_an_expected_version_ahead_of_the_stream_fails_without_a_gap(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """An expected version past the stream's end fails; the next right append is gapless."""
    await store.append("run-a", batch(3), 0)

    with pytest.raises(ConcurrencyError) as caught:
        await store.append("run-a", batch(1, "ahead"), 5)

    expected = "Wrong expected version: 5 (Stream: run-a, Stream Version: 3)"
    assert expected == str(caught.value)
    assert await versions_of(pool, "run-a") == [1, 2, 3]
    await store.append("run-a", batch(1, "next"), 3)
    assert await versions_of(pool, "run-a") == [1, 2, 3, 4]
    assert await store.stream_version("run-a") == 4


async def test_an_expected_version_on_a_missing_stream_fails_without_creating_it(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """An expected version above 0 for a stream that does not exist fails; no row appears."""
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("run-missing", batch(1), 2)

    expected = "Wrong expected version: 2 (Stream: run-missing, Stream Version: 0)"
    assert expected == str(caught.value)
    assert await stored_streams_version(pool, "run-missing") is None
    assert await count_events(pool) == 0
    assert await store.stream_version("run-missing") == 0


async def test_a_version_already_stored_is_refused_by_the_key_as_a_concurrency_error(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The primary key (stream_id, version) is the backstop: with the stream's row put
    behind its events, appends at that stale version (one event, several) write
    nothing and raise ConcurrencyError."""
    await store.append("run-a", batch(3), 0)
    await pool.execute("UPDATE streams SET version = 1 WHERE stream_id = 'run-a'")

    for events in (batch(1, "one"), batch(2, "two")):
        with pytest.raises(ConcurrencyError) as caught:
            await store.append("run-a", events, 1)
        assert isinstance(caught.value.__cause__, asyncpg.UniqueViolationError)
        assert caught.value.__cause__.constraint_name == "events_pkey"
    assert await versions_of(pool, "run-a") == [1, 2, 3]
    assert await count_events(pool) == 3


async def test_events_are_keyed_by_stream_and_version_with_no_index_on_position_alone(
    pool: asyncpg.Pool,
) -> None:
    """Each index costs every append: the primary key (stream_id, version), event ids
    (idempotency) and commit order; none on global_position alone, nothing reads by it."""
    rows = await pool.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'events' ORDER BY 1"
    )
    assert {row["indexname"]: row["indexdef"].split(" USING ")[1] for row in rows} == {
        "events_commit_order_idx": "btree (transaction_id, global_position)",
        "events_event_id_key": "btree (event_id)",
        "events_pkey": "btree (stream_id, version)",
    }


async def test_expected_version_none_appends_at_the_end(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Expected version None creates a new stream or appends after whatever is there."""
    await store.append("run-a", batch(2, "first"), None)
    assert await versions_of(pool, "run-a") == [1, 2]

    await store.append("run-a", batch(3, "second"), None)

    assert await versions_of(pool, "run-a") == [1, 2, 3, 4, 5]
    assert await stored_streams_version(pool, "run-a") == 5
    assert await store.stream_version("run-a") == 5


async def test_streams_are_independent(store: EventStore, pool: asyncpg.Pool) -> None:
    """Each stream has its own versions; appending to one leaves the other alone."""
    await store.append("run-a", batch(2, "a"), 0)
    await store.append("run-b", batch(1, "b"), 0)
    await store.append("run-a", batch(1, "a2"), 2)

    assert await versions_of(pool, "run-a") == [1, 2, 3]
    assert await versions_of(pool, "run-b") == [1]
    assert await store.stream_version("run-b") == 1


async def test_append_needs_at_least_one_event(store: EventStore, pool: asyncpg.Pool) -> None:
    """An empty append is refused and creates no stream."""
    with pytest.raises(ValueError, match="at least one event"):
        await store.append("run-empty", [], 0)

    assert await stored_streams_version(pool, "run-empty") is None


# --- idempotency ---------------------------------------------------------------


async def test_appending_the_same_events_again_returns_their_positions_and_writes_nothing(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A retried append of stored events answers the original positions, stale or not."""
    events = batch(3)
    original = await store.append("run-a", events, 0)
    await store.append("run-a", batch(2, "later"), 3)
    before = await count_events(pool)

    for expected_version in (0, 2, 3, 5, None):
        again = await store.append("run-a", events, expected_version)
        assert original == again, f"expected_version={expected_version}"

    assert await count_events(pool) == before
    assert await stored_streams_version(pool, "run-a") == 5
    assert await versions_of(pool, "run-a") == [1, 2, 3, 4, 5]


async def test_retrying_inside_a_caller_transaction_returns_the_positions_too(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The idempotent answer also comes through an append on the caller's connection."""
    events = batch(2)
    original = await store.append("run-a", events, 0)

    async with pool.acquire() as conn, conn.transaction():
        again = await store.append("run-a", events, 0, conn=conn)

    assert original == again
    assert await count_events(pool) == 2


@pytest.mark.parametrize("stored_first", [True, False], ids=["stored-first", "stored-last"])
@pytest.mark.parametrize("expected_version", [None, 2])
async def test_a_partial_overlap_with_stored_events_is_an_idempotency_conflict(
    store: EventStore,
    pool: asyncpg.Pool,
    stored_first: bool,
    expected_version: int | None,
) -> None:
    """Some ids stored and some new: IdempotencyConflictError, and nothing is written.

    Whichever position the stored event has in the batch, the append is
    neither a retry nor a new append.
    """
    stored = batch(2, "stored")
    await store.append("run-a", stored, 0)
    fresh = started("fresh")
    mixed = [stored[0], fresh] if stored_first else [fresh, stored[1]]

    with pytest.raises(IdempotencyConflictError):
        await store.append("run-a", mixed, expected_version)

    assert await count_events(pool) == 2
    assert await stored_streams_version(pool, "run-a") == 2
    assert (
        await pool.fetchval("SELECT count(*) FROM events WHERE event_id = $1", fresh.event_id) == 0
    )


async def test_stored_events_appended_to_another_stream_are_an_idempotency_conflict(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Event ids stored in one stream cannot be appended to another."""
    events = batch(2)
    await store.append("run-a", events, 0)

    with pytest.raises(IdempotencyConflictError):
        await store.append("run-b", events, None)

    assert await count_events(pool) == 2
    assert await stored_streams_version(pool, "run-b") is None


@pytest.mark.parametrize(("existing", "expected_version"), [(0, None), (0, 0), (2, None), (2, 2)])
async def test_concurrent_appends_of_the_same_events_store_one_copy(
    store: EventStore, pool: asyncpg.Pool, existing: int, expected_version: int | None
) -> None:
    """Eight simultaneous appends of the very same events all answer the same positions."""
    stream = "run-dup"
    if existing:
        await store.append(stream, batch(existing, "setup"), 0)
    events = batch(3, "dup")

    results = await asyncio.gather(
        *(store.append(stream, events, expected_version) for _ in range(8))
    )

    assert len({tuple(positions) for positions in results}) == 1
    assert await count_events(pool) == existing + 3
    assert await versions_of(pool, stream) == list(range(1, existing + 4))
    assert await store.stream_version(stream) == existing + 3


@pytest.mark.parametrize(("existing", "expected_version"), [(0, None), (0, 0), (2, None), (2, 2)])
async def test_an_append_blocked_behind_the_same_events_answers_their_positions(
    store: EventStore, pool: asyncpg.Pool, existing: int, expected_version: int | None
) -> None:
    """A retry that waits on the original's open transaction answers its positions at commit.

    The original append holds its transaction open; the duplicate is blocked on
    its lock (checked in pg_stat_activity); once the original commits, the
    duplicate returns the same positions and no second copy exists.
    """
    stream = "run-dup"
    if existing:
        await store.append(stream, batch(existing, "setup"), 0)
    events = batch(3, "dup")
    async with pool.acquire() as conn:
        transaction = conn.transaction()
        await transaction.start()
        try:
            original = await store.append(stream, events, expected_version, conn=conn)
            duplicate = asyncio.create_task(store.append(stream, events, expected_version))
            await wait_for_lock_waiters(pool, 1)
        except BaseException:
            await transaction.rollback()
            raise
        await transaction.commit()

    assert original == await asyncio.wait_for(duplicate, timeout=10)
    assert await count_events(pool) == existing + 3
    assert await store.stream_version(stream) == existing + 3


# --- the caller's transaction ----------------------------------------------------


async def test_an_append_in_a_rolled_back_caller_transaction_stores_nothing(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Appends made on the caller's connection roll back with the caller's transaction."""
    await store.append("run-a", batch(2, "before"), 0)

    async def doomed(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await store.append("run-a", batch(2, "doomed"), 2, conn=conn)
            await store.append("run-new", batch(1, "doomed-new"), 0, conn=conn)
            assert await store.stream_version("run-a") == 2  # not committed yet
            raise Rollback

    async with pool.acquire() as conn:
        with pytest.raises(Rollback):
            await doomed(conn)

    assert await count_events(pool) == 2
    assert await stored_streams_version(pool, "run-a") == 2
    assert await stored_streams_version(pool, "run-new") is None
    assert await store.stream_version("run-new") == 0
    await store.append("run-a", batch(1, "after"), 2)
    assert await versions_of(pool, "run-a") == [1, 2, 3]


async def test_an_append_in_a_committed_caller_transaction_is_stored(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Appends on the caller's connection to two streams commit together."""
    async with pool.acquire() as conn, conn.transaction():
        await store.append("run-a", batch(2, "a"), 0, conn=conn)
        await store.append("run-b", batch(1, "b"), 0, conn=conn)

    assert await versions_of(pool, "run-a") == [1, 2]
    assert await versions_of(pool, "run-b") == [1]
    transactions = await pool.fetchval("SELECT count(DISTINCT transaction_id) FROM events")
    assert transactions == 1


# --- immutability ------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE events SET type = 'run.completed'",
        "UPDATE events SET data = '{}'::jsonb WHERE version = 1",
        "DELETE FROM events",
        "DELETE FROM events WHERE stream_id = 'run-a'",
        "TRUNCATE events",
        "TRUNCATE events CASCADE",
    ],
)
async def test_stored_events_cannot_be_changed_or_deleted(
    store: EventStore, pool: asyncpg.Pool, statement: str
) -> None:
    """UPDATE, DELETE and TRUNCATE of events raise EV003 and leave the table as it was."""
    await store.append("run-a", [NewEvent(event=RunCancelled(reason="x")), started("s")], 0)
    await store.append("run-b", [NewEvent(event=RunCompleted())], 0)
    snapshot = "SELECT * FROM events ORDER BY global_position"
    before = await pool.fetch(snapshot)

    with pytest.raises(asyncpg.PostgresError) as caught:
        await pool.execute(statement)

    assert caught.value.sqlstate == "EV003"
    assert "append-only" in str(caught.value)
    assert before == await pool.fetch(snapshot)
    assert len(before) == 3


# --- NOTIFY ---------------------------------------------------------------------------


async def test_a_listener_is_notified_of_committed_appends_only(
    store: EventStore, pool: asyncpg.Pool, database_url: str
) -> None:
    """A LISTEN on channel `events` receives the stream id of each committed append.

    The store announces its own appends once they commit; an append made in the
    caller's transaction is announced by the caller after its commit, so one
    rolled back is never announced.
    """
    received: list[str] = []
    arrived = asyncio.Event()

    def on_notify(_conn: object, _pid: int, channel: str, payload: str) -> None:
        assert channel == "events"
        received.append(payload)
        arrived.set()

    async def append_then_roll_back(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await store.append("run-rolled-back", batch(1), 0, conn=conn)
            raise Rollback

    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("events", on_notify)

        await store.append("run-first", batch(2), 0)
        await asyncio.wait_for(arrived.wait(), timeout=5)
        assert received == ["run-first"]

        arrived.clear()
        async with pool.acquire() as conn:
            with pytest.raises(Rollback):
                await append_then_roll_back(conn)
            async with conn.transaction():
                await store.append("run-second", batch(1), None, conn=conn)
            store.announce("run-second")
        await asyncio.wait_for(arrived.wait(), timeout=5)
        assert received == ["run-first", "run-second"]
    finally:
        await listener.close()


async def test_an_append_in_the_callers_transaction_is_announced_by_the_caller_only(
    store: EventStore, pool: asyncpg.Pool, database_url: str
) -> None:
    """No NOTIFY from inside the appending transaction (it would serialise commits).

    The commit alone announces nothing; `announce` after it does, and wake-ups
    asked for together arrive coalesced in one batch of distinct stream ids.
    """
    received: list[str] = []
    arrived = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        received.append(payload)
        arrived.set()

    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("events", on_notify)
        async with pool.acquire() as conn, conn.transaction():
            await store.append("run-quiet", batch(2), 0, conn=conn)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(arrived.wait(), timeout=0.5)
        assert received == []

        store.announce("run-quiet", "run-other")
        store.announce("run-quiet")
        await store.notifier.flush()
        await asyncio.wait_for(arrived.wait(), timeout=5)
        await asyncio.sleep(0.2)
        assert sorted(received) == ["run-other", "run-quiet"]
    finally:
        await listener.close()


async def test_payloads_and_metadata_are_stored_as_written(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The exact bytes the codec wrote (`json`); `jsonb` would store a parsed form and
    render it back with other spacing."""
    new = NewEvent(event=started("w").event, metadata=Metadata(request_id="req_1"))
    await store.append("run-as-written", [new], 0)
    row = await pool.fetchrow(
        "SELECT data::text, metadata::text FROM events WHERE stream_id = 'run-as-written'"
    )
    assert codec.encode(new.event)[2].decode() == row["data"]
    assert msgspec.json.encode(new.metadata).decode() == row["metadata"]


# Up to 16 events travel as a VALUES list of scalars, more as unnested arrays:
# both sides of the boundary, creating a stream and appending to one.
@pytest.mark.parametrize("count", [1, 2, 16, 17, 40])
async def test_appends_of_any_length_store_every_field_in_order(
    store: EventStore, pool: asyncpg.Pool, count: int
) -> None:
    stream = f"run-length-{count}"
    first = [
        NewEvent(
            event=started(f"a{i}").event,
            metadata=Metadata(request_id=f"req-{i}") if i % 2 else Metadata(),
            occurred_at=datetime(2026, 11, 23, 5, 0, i, tzinfo=UTC),
        )
        for i in range(count)
    ]
    second = batch(count, "b")
    positions = await store.append(stream, first, 0)
    positions += await store.append(stream, second, count)
    with pytest.raises(ConcurrencyError):
        await store.append(stream, batch(count, "stale"), count)
    with pytest.raises(ConcurrencyError):
        await store.append(f"{stream}-other", batch(count, "c"), 3)

    stored = await store.read_stream(stream)
    written = first + second
    assert [e.version for e in stored] == list(range(1, 2 * count + 1))
    assert [e.global_position for e in stored] == positions
    assert [(e.event_id, e.event, e.metadata, e.occurred_at) for e in stored] == [
        (new.event_id, new.event, new.metadata, new.occurred_at) for new in written
    ]
    assert await stored_streams_version(pool, stream) == 2 * count
    assert await stored_streams_version(pool, f"{stream}-other") is None


TIMES = [
    datetime(2026, 11, 23, 0, 30, 1, 123456, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before the wire's epoch
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(2026, 3, 29, 3, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
]


@pytest.mark.parametrize("value", TIMES, ids=str)
async def test_timestamps_travel_both_ways_exactly(pool: asyncpg.Pool, value: datetime) -> None:
    """The store's timestamptz codec: what PostgreSQL reads is what was sent, and back."""
    async with pool.acquire() as conn:
        await conn.execute("SET TIME ZONE 'UTC'")
        text = await conn.fetchval("SELECT $1::timestamptz::text", value)
        assert text == value.astimezone(UTC).isoformat(sep=" ").replace("+00:00", "+00")
        back = await conn.fetchval(f"SELECT '{text}'::timestamptz")
        assert back == value
        assert back.utcoffset() == timedelta(0)
        again = await conn.fetchval(f"SELECT '{text}'::timestamptz")
        assert again is back  # the second decoding is a lookup


async def test_naive_timestamps_are_local_time_and_infinity_decodes(pool: asyncpg.Pool) -> None:
    """As asyncpg's own codec: a naive datetime is the machine's local time, and
    datetime.max and datetime.min are PostgreSQL's infinities, both ways."""
    naive = datetime(2026, 11, 23, 1, 2, 3, 4)
    assert await pool.fetchval("SELECT $1::timestamptz", naive) == naive.astimezone()
    for value, text in (
        (datetime.max, "infinity"),
        (datetime.max.replace(tzinfo=UTC), "infinity"),
        (datetime.min, "-infinity"),
        (datetime.min.replace(tzinfo=UTC), "-infinity"),
    ):
        assert await pool.fetchval("SELECT $1::timestamptz::text", value) == text
    last_day = datetime(9999, 12, 31, tzinfo=UTC)  # not an infinity
    assert await pool.fetchval("SELECT $1 = '9999-12-31 00:00:00+00'::timestamptz", last_day)
    assert await pool.fetchval("SELECT 'infinity'::timestamptz") == datetime.max.replace(tzinfo=UTC)
    assert await pool.fetchval("SELECT '-infinity'::timestamptz") == datetime.min.replace(
        tzinfo=UTC
    )


async def test_the_timestamp_memo_stays_bounded(pool: asyncpg.Pool) -> None:
    """Many distinct timestamps decode right and the memo never holds more than 4,096."""
    rows = await pool.fetch(
        "SELECT i, timestamptz '2026-01-01 00:00:00+00' + i * interval '1 microsecond' AS at"
        " FROM generate_series(1, 10000) AS i"
    )
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert all(row["at"] == start + timedelta(microseconds=row["i"]) for row in rows)
    assert len(_TIMESTAMPS) <= 4096


async def test_stream_reads_carry_their_stream_id(store: EventStore) -> None:
    """Stream rows leave the id out; every event read still names its stream."""
    await store.append("run-one", batch(3, "one"), 0)
    await store.append("run-two", batch(2, "two"), 0)
    assert [e.stream_id for e in await store.read_stream("run-one")] == ["run-one"] * 3
    paged = [e async for e in store.iterate_stream("run-two", page_size=1)]
    assert [(e.stream_id, e.version) for e in paged] == [("run-two", 1), ("run-two", 2)]


@pytest.mark.parametrize("page_size", [1000, 40, 32, 7])
async def test_iterating_a_stream_yields_every_event_in_order_whatever_the_page(
    store: EventStore, page_size: int
) -> None:
    """Pages longer than the rows converted at once (32) come out whole, in order."""
    stream = f"run-pages-{page_size}"
    for first in range(0, 75, 15):
        await store.append(stream, batch(15, f"p{first}"), first)
    everything = await store.read_stream(stream)
    paged = [e async for e in store.iterate_stream(stream, page_size=page_size)]
    assert [e.version for e in paged] == list(range(1, 76))
    assert paged == everything
    tail = [e async for e in store.iterate_stream(stream, 40, page_size=page_size)]
    assert tail == everything[39:]
