"""Reused event ids: a retry of the same append answers its positions; anything else is refused.

The same append is all of its events, in the same order, at consecutive versions
of the same stream, with the same type, schema version, payload and metadata.
Every other reuse of a stored id is IdempotencyConflictError, names the stream,
version and event id, and writes nothing. The same id twice in one append is a
DuplicateEventIdError, never a ConcurrencyError (which callers retry).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta

import asyncpg
import msgspec
import pytest

from events.errors import ConcurrencyError, DuplicateEventIdError, IdempotencyConflictError
from events.store import (
    _FAST_APPEND,
    _FAST_CREATE,
    _MOST_AS_VALUES,
    EventStore,
    _fast_as_values,
)
from events.types import Metadata, NewEvent, RunCancelled, TestStarted

STREAM = "run-a"


def started(label: str) -> NewEvent:
    """A new TestStarted event with a fresh event id."""
    return NewEvent(event=TestStarted(result_id=f"result-{label}", test_id=f"test-{label}"))


def batch(count: int, label: str = "e") -> list[NewEvent]:
    """`count` new events with fresh ids."""
    return [started(f"{label}-{i}") for i in range(count)]


async def snapshot(pool: asyncpg.Pool) -> list[tuple[object, ...]]:
    """Every stored event and stream row, to show that nothing was written."""
    events = await pool.fetch(
        "SELECT stream_id, version, event_id, global_position FROM events ORDER BY 1, 2"
    )
    streams = await pool.fetch(
        "SELECT stream_id, version, last_transaction_id::text FROM streams ORDER BY 1"
    )
    return [tuple(row) for row in events] + [tuple(row) for row in streams]


def other_payload(events: list[NewEvent]) -> list[NewEvent]:
    """The same ids, the second event's payload changed."""
    changed = msgspec.structs.replace(events[1].event, result_id="result-other")
    return [events[0], msgspec.structs.replace(events[1], event=changed), events[2]]


def other_type(events: list[NewEvent]) -> list[NewEvent]:
    """The same ids, the last event of another type."""
    return [*events[:2], msgspec.structs.replace(events[2], event=RunCancelled())]


def other_metadata(events: list[NewEvent]) -> list[NewEvent]:
    """The same ids, the first event with other metadata."""
    first = msgspec.structs.replace(events[0], metadata=Metadata(request_id="another"))
    return [first, *events[1:]]


def other_order(events: list[NewEvent]) -> list[NewEvent]:
    """The same events in another order."""
    return [events[1], events[0], events[2]]


def mixed_stored_first(events: list[NewEvent]) -> list[NewEvent]:
    """Stored ids followed by a new one."""
    return [*events, started("new")]


def mixed_new_first(events: list[NewEvent]) -> list[NewEvent]:
    """A new id followed by stored ones."""
    return [started("new"), *events]


def first_part(events: list[NewEvent]) -> list[NewEvent]:
    """The first events of the stored append, without its last."""
    return events[:2]


def last_part(events: list[NewEvent]) -> list[NewEvent]:
    """The last events of the stored append, without its first."""
    return events[1:]


def middle_part(events: list[NewEvent]) -> list[NewEvent]:
    """One event from the middle of the stored append."""
    return events[1:2]


CONFLICTS: dict[str, Callable[[list[NewEvent]], list[NewEvent]]] = {
    "payload": other_payload,
    "type": other_type,
    "metadata": other_metadata,
    "order": other_order,
    "stored-then-new": mixed_stored_first,
    "new-then-stored": mixed_new_first,
    "first-part": first_part,
    "last-part": last_part,
    "middle-part": middle_part,
}


async def append_through(
    path: str,
    store: EventStore,
    pool: asyncpg.Pool,
    stream_id: str,
    events: list[NewEvent],
    *,
    expected_version: int | None,
) -> list[int]:
    """Append on the store's own connection, or inside a caller's transaction."""
    if path == "own":
        return await store.append(stream_id, events, expected_version)
    async with pool.acquire() as conn, conn.transaction():
        return await store.append(stream_id, events, expected_version, conn=conn)


@pytest.mark.parametrize("path", ["own", "conn"])
@pytest.mark.parametrize("expected_version", [None, 0, 3])
@pytest.mark.parametrize("kind", list(CONFLICTS))
async def test_stored_ids_in_another_append_are_refused_and_nothing_is_written(
    store: EventStore,
    pool: asyncpg.Pool,
    kind: str,
    expected_version: int | None,
    path: str,
) -> None:
    """Another payload, type, metadata or order, a part of the append, or stored ids mixed
    with new ones: refused.

    Whatever the expected version (stale, current or none), the answer is
    IdempotencyConflictError naming the stream, a version and an event id, and
    the tables are exactly as before.
    """
    stored = batch(3)
    await store.append(STREAM, stored, 0)
    before = await snapshot(pool)

    attempt = CONFLICTS[kind](stored)
    with pytest.raises(IdempotencyConflictError) as refused:
        await append_through(path, store, pool, STREAM, attempt, expected_version=expected_version)

    assert not isinstance(refused.value, ConcurrencyError)
    message = str(refused.value)
    assert STREAM in message
    assert "Version" in message
    assert any(str(new.event_id) in message for new in attempt)
    assert await snapshot(pool) == before


@pytest.mark.parametrize("path", ["own", "conn"])
@pytest.mark.parametrize("expected_version", [None, 0, 3])
async def test_stored_ids_appended_to_another_stream_are_refused(
    store: EventStore, pool: asyncpg.Pool, expected_version: int | None, path: str
) -> None:
    """The same events sent to another stream (new or existing) are not a retry."""
    stored = batch(3)
    await store.append(STREAM, stored, 0)
    if expected_version:
        await store.append("run-b", batch(3, "b"), 0)
    before = await snapshot(pool)

    with pytest.raises(IdempotencyConflictError, match="run-b") as refused:
        await append_through(path, store, pool, "run-b", stored, expected_version=expected_version)

    assert str(stored[0].event_id) in str(refused.value)
    assert await snapshot(pool) == before


@pytest.mark.parametrize("path", ["own", "conn"])
@pytest.mark.parametrize("stored_twice", [False, True], ids=["new-id", "stored-id"])
async def test_one_id_twice_in_an_append_is_its_own_error(
    store: EventStore, pool: asyncpg.Pool, stored_twice: bool, path: str
) -> None:
    """An id repeated within one batch is DuplicateEventIdError, not a ConcurrencyError."""
    stored = batch(2)
    await store.append(STREAM, stored, 0)
    before = await snapshot(pool)
    twice = stored[0] if stored_twice else started("twice")
    events = [twice, started("other"), twice]

    for expected_version in (None, 0, 2):
        with pytest.raises(DuplicateEventIdError, match=str(twice.event_id)) as refused:
            await append_through(
                path, store, pool, STREAM, events, expected_version=expected_version
            )
        assert not isinstance(refused.value, ConcurrencyError)
        assert await snapshot(pool) == before


async def test_the_database_refuses_one_id_twice_too(pool: asyncpg.Pool) -> None:
    """append_events() itself refuses a repeated id (EV005), for callers of the SQL."""
    event_id = uuid.uuid4()
    with pytest.raises(asyncpg.PostgresError, match="Duplicate event id") as refused:
        await pool.fetch(
            "SELECT * FROM append_events('run-a', NULL, $1, $2, $3, $4, $5, $6)",
            [event_id, event_id],
            ["run.cancelled"] * 2,
            [1, 1],
            ["{}"] * 2,
            ["{}"] * 2,
            [None, None],
        )
    assert refused.value.sqlstate == "EV005"  # type: ignore[attr-defined]
    assert await pool.fetchval("SELECT count(*) FROM events") == 0


@pytest.mark.parametrize("path", ["own", "conn"])
async def test_a_retry_of_the_same_append_answers_its_positions_at_any_expected_version(
    store: EventStore, pool: asyncpg.Pool, path: str
) -> None:
    """Same events, same order: the original positions, even with a new occurred_at."""
    stored = batch(3)
    original = await store.append(STREAM, stored, 0)
    await store.append(STREAM, batch(2, "later"), 3)
    before = await snapshot(pool)
    later = [msgspec.structs.replace(e, occurred_at=e.occurred_at + timedelta(1)) for e in stored]

    for expected_version in (None, 0, 3, 5):
        for events in (stored, later):
            again = await append_through(
                path, store, pool, STREAM, events, expected_version=expected_version
            )
            assert again == original, f"expected_version={expected_version}"
    assert await snapshot(pool) == before


@pytest.mark.parametrize("count", [1, 3, 20])
async def test_a_retry_through_conn_at_the_current_version_keeps_the_transaction(
    store: EventStore, pool: asyncpg.Pool, count: int
) -> None:
    """Retried inside the caller's transaction at the stream's current version (what a
    caller that re-read the stream sends), the append answers the original positions
    without an error, and the caller's own writes in that transaction commit.
    """
    await pool.execute("CREATE TABLE side (note text)")
    stored = batch(count)
    original = await store.append(STREAM, stored, 0)
    before = await snapshot(pool)

    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("INSERT INTO side VALUES ('before')")
        again = await store.append(STREAM, stored, count, conn=conn)
        await conn.execute("INSERT INTO side VALUES ('after')")

    assert again == original
    assert await snapshot(pool) == before
    assert [r["note"] for r in await pool.fetch("SELECT note FROM side")] == ["before", "after"]


async def test_a_conflicting_retry_through_conn_writes_nothing(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A different payload at the current version inside a caller's transaction: refused,
    and the transaction writes nothing (the caller rolls it back).
    """
    stored = batch(3)
    await store.append(STREAM, stored, 0)
    before = await snapshot(pool)

    async with pool.acquire() as conn:
        with pytest.raises(IdempotencyConflictError):
            async with conn.transaction():
                await store.append(STREAM, other_payload(stored), 3, conn=conn)

    assert await snapshot(pool) == before


# --- recorded_at ---------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 10, 17])
@pytest.mark.parametrize("expected_version", [0, None])
@pytest.mark.parametrize("path", ["own", "conn"])
async def test_the_events_of_one_append_share_recorded_at(
    store: EventStore, pool: asyncpg.Pool, count: int, expected_version: int | None, path: str
) -> None:
    """One append, one recorded_at, on every path (VALUES, arrays, append_events())."""
    await append_through(path, store, pool, STREAM, batch(count), expected_version=expected_version)
    await append_through(path, store, pool, STREAM, batch(count, "second"), expected_version=None)

    times = await pool.fetch(
        "SELECT version, recorded_at FROM events WHERE stream_id = $1 ORDER BY version", STREAM
    )
    first, second = (
        {r["recorded_at"] for r in times[:count]},
        {r["recorded_at"] for r in times[count:]},
    )
    assert len(first) == 1
    assert len(second) == 1
    assert max(first) < min(second)
    default = await pool.fetchval(
        "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d"
        " JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
        " WHERE d.adrelid = 'events'::regclass AND a.attname = 'recorded_at'"
    )
    assert default == "statement_timestamp()"


@pytest.mark.parametrize(
    ("count", "new_stream"), [(1, False), (10, False), (10, True), (20, False)]
)
async def test_the_check_for_stored_ids_probes_the_index_in_any_plan(
    pool: asyncpg.Pool, count: int, new_stream: bool
) -> None:
    """The fast path's check for stored ids is index probes even in a generic plan made
    while the table is empty (such a plan is cached and kept as the table grows): a
    scan of every event there made each append cost more than the one before.
    """
    if count > _MOST_AS_VALUES:
        sql, parameters = (_FAST_CREATE if new_stream else _FAST_APPEND), 8
    else:
        sql, parameters = _fast_as_values(count, new_stream), 2 + 6 * count
    async with pool.acquire() as conn:
        await conn.execute(f"PREPARE fast AS {sql}")
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        nulls = ", ".join(["NULL"] * parameters)
        plan = "\n".join(row[0] for row in await conn.fetch(f"EXPLAIN EXECUTE fast({nulls})"))
    assert "Seq Scan on events" not in plan, plan
    assert "events_event_id_key" in plan, plan
