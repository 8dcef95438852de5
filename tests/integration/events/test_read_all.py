"""Reading everything in commit order: no event lost, none twice, none uncommitted.

`global_position` is drawn at insert but becomes visible at commit, so positions
commit out of order. These tests build exactly the interleavings where a reader
that checkpoints by position alone skips events forever, and check ours does not.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import msgspec
import pytest

from events import codec
from events.errors import StaleTransactionError
from events.store import ORIGIN, Checkpoint, EventStore, checkpoint_of
from events.types import (
    Metadata,
    NewEvent,
    RecordedEvent,
    RunCancelled,
    RunCompleted,
    TestStarted,
    utcnow,
)

# What a reader that checkpoints by position alone would run.
NAIVE_READ = """
SELECT event_id, global_position FROM events
 WHERE global_position > $1 ORDER BY global_position LIMIT $2
"""


class Rollback(Exception):
    """Raised inside a writer's transaction to roll it back."""


def started(label: str) -> NewEvent:
    """A new TestStarted event with a fresh event id."""
    return NewEvent(event=TestStarted(result_id=f"result-{label}", test_id=f"test-{label}"))


def batch(count: int, label: str = "e") -> list[NewEvent]:
    """`count` new events with fresh ids."""
    return [started(f"{label}-{i}") for i in range(count)]


def ids(events: list[RecordedEvent]) -> list[uuid.UUID]:
    """The event ids of recorded events, in order."""
    return [event.event_id for event in events]


async def read_until(
    store: EventStore, after: Checkpoint, count: int, within: float = 15
) -> list[RecordedEvent]:
    """Read from `after` until `count` events are final (other sessions may hold the horizon).

    Only waits for events to become readable; it never asserts anything by waiting.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        events = await store.read_all(after, limit=10_000)
        if len(events) >= count or loop.time() > deadline:
            return events
        await asyncio.sleep(0.01)


# --- many writers, one follower -------------------------------------------------------


async def test_a_follower_sees_every_committed_event_exactly_once_under_concurrent_writers(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A follower paging through read_all while 12 writers commit out of order misses nothing.

    Writers append 1-5 events per transaction to their own and to shared
    streams; some transactions are held open 10-300 ms (some after taking their
    transaction id early, so that transaction-id order and position order
    disagree), some are rolled back. The follower reads pages of 1-7 events as
    fast as it can. It must see each committed event exactly once, never a
    rolled-back one, with strictly increasing checkpoints, in the same order as
    a full read afterwards. A position-only reader running alongside must lose
    events, which proves the interleavings really happened.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    writers, transactions = 12, 40
    shared_streams = [f"run-shared-{n}" for n in range(4)]
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    held = 0
    writing = True

    async def writer(number: int) -> None:
        nonlocal held
        rng = random.Random(seed + number)
        own_streams = [f"run-w{number}-{n}" for n in range(3)]
        for t in range(transactions):
            stream = rng.choice(shared_streams) if rng.random() < 0.25 else rng.choice(own_streams)
            events = batch(rng.randint(1, 5), f"w{number}-t{t}")
            hold_before = rng.random() < 0.15
            hold_after = rng.random() < 0.2 and stream not in shared_streams
            rollback = rng.random() < 0.15
            async with pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        if hold_before:
                            # Take a transaction id now, draw positions later.
                            await conn.execute("SELECT pg_current_xact_id()")
                            await asyncio.sleep(rng.uniform(0.01, 0.3))
                        await store.append(stream, events, None, conn=conn)
                        if hold_after:
                            # Positions drawn now, visible later.
                            await asyncio.sleep(rng.uniform(0.01, 0.3))
                        if rollback:
                            raise Rollback
                except (Rollback, StaleTransactionError):
                    # A transaction that took its id early, refused because a
                    # younger one appended to the stream first, rolls back too.
                    rolled_back.update(e.event_id for e in events)
                else:
                    committed.update(e.event_id for e in events)
            held += hold_before or hold_after
            await asyncio.sleep(rng.uniform(0, 0.005))

    seen: list[RecordedEvent] = []
    checkpoints_out_of_order: list[tuple[Checkpoint, Checkpoint]] = []
    pages_over_limit: list[tuple[int, int]] = []

    async def follower() -> None:
        rng = random.Random(seed - 1)
        checkpoint = ORIGIN
        loop = asyncio.get_running_loop()
        drain_deadline: float | None = None
        while True:
            limit = rng.choice([1, 3, 7, 7, 7])
            page = await store.read_all(checkpoint, limit=limit)
            if len(page) > limit:
                pages_over_limit.append((limit, len(page)))
            for event in page:
                after = checkpoint_of(event)
                if not after > checkpoint:
                    checkpoints_out_of_order.append((checkpoint, after))
                checkpoint = after
                seen.append(event)
            if not writing:
                drain_deadline = drain_deadline or loop.time() + 20
                caught_up = committed <= {event.event_id for event in seen}
                if (caught_up and not page) or loop.time() > drain_deadline:
                    return
            if len(page) < limit:
                await asyncio.sleep(rng.uniform(0, 0.003))

    naive_seen: list[uuid.UUID] = []

    async def naive_follower() -> None:
        position = 0
        while writing:
            rows = await pool.fetch(NAIVE_READ, position, 7)
            naive_seen.extend(row["event_id"] for row in rows)
            if rows:
                position = rows[-1]["global_position"]
            else:
                await asyncio.sleep(0.001)
        rows = await pool.fetch(NAIVE_READ, position, 100_000)
        naive_seen.extend(row["event_id"] for row in rows)

    following = asyncio.create_task(follower())
    naive = asyncio.create_task(naive_follower())
    try:
        await asyncio.wait_for(
            asyncio.gather(*(writer(number) for number in range(writers))), timeout=40
        )
    finally:
        writing = False
    await asyncio.wait_for(asyncio.gather(following, naive), timeout=30)

    context = f"seed={seed}"
    seen_ids = ids(seen)
    assert len(seen_ids) == len(set(seen_ids)), f"an event was read twice ({context})"
    assert not set(seen_ids) & rolled_back, f"a rolled-back event was read ({context})"
    missing = committed - set(seen_ids)
    assert not missing, f"{len(missing)} committed events never read ({context})"
    assert set(seen_ids) == committed
    assert checkpoints_out_of_order == [], context
    assert pages_over_limit == [], context
    last_version: dict[str, int] = {}
    for event in seen:
        assert event.version == last_version.get(event.stream_id, 0) + 1, context
        last_version[event.stream_id] = event.version
    table = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM events")}
    assert table == committed
    assert await store.read_all(checkpoint_of(seen[-1])) == []
    everything = [event async for event in store.iterate_all(page_size=50)]
    assert seen_ids == ids(everything), f"the commit order changed behind a checkpoint ({context})"

    # The interleavings that defeat a position-only reader really happened.
    assert held > 20, context
    assert rolled_back, context
    assert len(committed - set(naive_seen)) > 0, f"no position was skipped: no race ({context})"


# --- deterministic late commits ----------------------------------------------------


async def test_an_older_open_transaction_holds_back_younger_commits_until_it_commits(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A commits last while holding the lower position and the older transaction id.

    With A open, B (appended and committed after A began) is visible to an
    ordinary query, yet read_all must return nothing past the events before A:
    returning B would put the checkpoint past A's position, and a reader that
    trusts positions would then skip A forever. Once A commits, A then B.
    """
    before = await store.append("run-before", batch(1, "before"), 0)
    first = await read_until(store, ORIGIN, 1)
    assert [event.global_position for event in first] == before

    async with pool.acquire() as conn_a, pool.acquire() as conn_b:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            a_events = batch(2, "a")
            a_positions = await store.append("run-a", a_events, 0, conn=conn_a)
            b_events = batch(2, "b")
            async with conn_b.transaction():
                b_positions = await store.append("run-b", b_events, 0, conn=conn_b)
            assert max(a_positions) < min(b_positions)
            b_committed = await pool.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = 'run-b'"
            )
            assert b_committed == 2  # B is committed and visible to a plain query

            assert await store.read_all(checkpoint_of(first[-1])) == []
            assert ids(await store.read_all(ORIGIN)) == ids(first)
            assert [e.event_id async for e in store.iterate_all(page_size=1)] == ids(first)
        except BaseException:
            await tx_a.rollback()
            raise
        await tx_a.commit()

    rest = await read_until(store, checkpoint_of(first[-1]), 4)
    assert ids(rest) == [e.event_id for e in a_events + b_events]
    assert [event.global_position for event in rest] == a_positions + b_positions
    assert await store.read_all(checkpoint_of(rest[-1])) == []


async def test_a_lower_position_committed_after_a_read_past_it_is_still_read(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A holds the lower position but the younger transaction id, and commits last.

    B takes its transaction id first, A then appends (lower position), B
    appends (higher position) and commits. read_all may and does return B while
    A is open, and its checkpoint is already past A's position; when A commits,
    reading from B's checkpoint must still return A. A reader checkpointing on
    global_position alone loses A here.
    """
    before = await store.append("run-before", batch(1, "before"), 0)
    first = await read_until(store, ORIGIN, 1)
    assert [event.global_position for event in first] == before

    async with pool.acquire() as conn_a, pool.acquire() as conn_b:
        tx_a = conn_a.transaction()
        tx_b = conn_b.transaction()
        b_open = True
        await tx_b.start()
        await tx_a.start()
        try:
            b_xid = int(await conn_b.fetchval("SELECT pg_current_xact_id()::text"))
            a_events = batch(2, "a")
            a_positions = await store.append("run-a", a_events, 0, conn=conn_a)
            a_xid = int(await conn_a.fetchval("SELECT pg_current_xact_id()::text"))
            b_events = batch(1, "b")
            b_positions = await store.append("run-b", b_events, 0, conn=conn_b)
            await tx_b.commit()
            b_open = False
            assert max(a_positions) < min(b_positions)
            assert b_xid < a_xid

            b_read = await read_until(store, checkpoint_of(first[-1]), 1)
            assert ids(b_read) == [b_events[0].event_id]
            assert b_read[0].transaction_id == b_xid
            after_b = checkpoint_of(b_read[-1])
            assert after_b.global_position > max(a_positions)
            assert await store.read_all(after_b) == []
        except BaseException:
            await tx_a.rollback()
            if b_open:
                await tx_b.rollback()
            raise
        await tx_a.commit()

    late = await read_until(store, after_b, 2)
    assert ids(late) == [e.event_id for e in a_events]
    assert [event.transaction_id for event in late] == [a_xid, a_xid]
    assert await store.read_all(checkpoint_of(late[-1])) == []
    everything = await store.read_all(ORIGIN)
    assert ids(everything) == ids(first) + ids(b_read) + ids(late)


async def test_a_rolled_back_transaction_releases_the_horizon_without_being_read(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """An open transaction that rolls back lets younger commits through and is never read."""
    async with pool.acquire() as conn_a:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            await store.append("run-a", batch(2, "a"), 0, conn=conn_a)
            b_events = batch(1, "b")
            await store.append("run-b", b_events, 0)
            assert await store.read_all(ORIGIN) == []
        finally:
            await tx_a.rollback()

    read = await read_until(store, ORIGIN, 1)
    assert ids(read) == [b_events[0].event_id]


# --- pagination ----------------------------------------------------------------------


async def _write_mixed_history(store: EventStore, pool: asyncpg.Pool) -> int:
    """50 events in single- and multi-event appends over four streams; one two-stream tx."""
    rng = random.Random(7)
    written = 0
    for n in range(12):
        size = rng.randint(1, 4)
        await store.append(f"run-{n % 4}", batch(size, f"p{n}"), None)
        written += size
    async with pool.acquire() as conn, conn.transaction():
        await store.append("run-0", batch(3, "tx-0"), None, conn=conn)
        await store.append("run-1", batch(2, "tx-1"), None, conn=conn)
    written += 5
    remaining = 50 - written
    await store.append("run-3", batch(remaining, "last"), None)
    return 50


async def test_read_all_pages_in_the_same_order_as_one_big_read(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Pages of 7 through checkpoint_of(last) give exactly the events of one big read, in order."""
    total = await _write_mixed_history(store, pool)
    everything = await read_until(store, ORIGIN, total)
    assert len(everything) == total

    paged: list[RecordedEvent] = []
    checkpoint = ORIGIN
    page_sizes: list[int] = []
    while True:
        page = await store.read_all(checkpoint, limit=7)
        page_sizes.append(len(page))
        paged.extend(page)
        if len(page) < 7:
            break
        checkpoint = checkpoint_of(page[-1])

    assert page_sizes == [7] * (total // 7) + [total % 7]
    assert ids(paged) == ids(everything)
    assert [checkpoint_of(e) for e in paged] == sorted(checkpoint_of(e) for e in everything)
    assert len({checkpoint_of(e) for e in paged}) == total
    iterated = [event async for event in store.iterate_all(page_size=7)]
    assert ids(iterated) == ids(everything)
    assert ids(await store.read_all(ORIGIN, limit=1)) == ids(everything[:1])


async def test_read_all_resumes_from_any_checkpoint(store: EventStore, pool: asyncpg.Pool) -> None:
    """Reading after the checkpoint of the k-th event returns exactly the events after it."""
    total = await _write_mixed_history(store, pool)
    everything = await read_until(store, ORIGIN, total)

    for k in range(total):
        after = await store.read_all(checkpoint_of(everything[k]), limit=1000)
        assert ids(after) == ids(everything[k + 1 :]), f"k={k}"
    tail = [e async for e in store.iterate_all(checkpoint_of(everything[20]), page_size=3)]
    assert ids(tail) == ids(everything[21:])


async def test_read_all_keeps_stream_order_and_returns_full_envelopes(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Within a stream read_all follows versions, and each event carries its envelope."""
    await _write_mixed_history(store, pool)
    special = NewEvent(
        event=RunCancelled(reason="operator"),
        metadata=Metadata(request_id="req-1", actor="key-1"),
        occurred_at=utcnow(),
    )
    await store.append("run-special", [special, NewEvent(event=RunCompleted())], 0)
    everything = await read_until(store, ORIGIN, 52)

    by_stream: dict[str, list[int]] = {}
    for event in everything:
        by_stream.setdefault(event.stream_id, []).append(event.version)
    for stream, versions in by_stream.items():
        assert versions == list(range(1, len(versions) + 1)), stream
        assert ids([e for e in everything if e.stream_id == stream]) == ids(
            await store.read_stream(stream)
        )
    recorded = next(e for e in everything if e.event_id == special.event_id)
    assert recorded.event == RunCancelled(reason="operator")
    assert recorded.metadata == Metadata(request_id="req-1", actor="key-1")
    assert recorded.occurred_at == special.occurred_at
    assert recorded.stream_id == "run-special"
    assert recorded.version == 1
    assert recorded.type == "run.cancelled"
    assert recorded.schema_version == 1


# --- upcasting through the store -----------------------------------------------------

# A schema-1 TestStarted: `test` and `try` became `test_id` and `attempt` in schema 2,
# which also added `worker`.
OLD_PAYLOAD = {"result_id": "result-old", "test": "test-old", "try": 3}


def _test_started_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    upgraded = {k: v for k, v in payload.items() if k not in ("test", "try")}
    upgraded["test_id"] = payload["test"]
    upgraded["attempt"] = payload["try"]
    upgraded["worker"] = "legacy"
    return upgraded


@pytest.fixture
def test_started_v2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """TestStarted is at schema 2, with an upcaster from schema 1; both undone afterwards."""
    monkeypatch.setattr(TestStarted, "schema_version", 2)
    codec.upcaster("test.started", 1)(_test_started_v1_to_v2)
    yield
    codec.unregister_upcaster("test.started", 1)


async def _insert_v1_event(database_url: str, stream_id: str) -> uuid.UUID:
    """Write a schema-1 TestStarted straight into the tables, as an old release did."""
    event_id = uuid.uuid4()
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await conn.execute("INSERT INTO streams (stream_id, version) VALUES ($1, 1)", stream_id)
            await conn.execute(
                "INSERT INTO events (stream_id, version, type, schema_version, data, metadata,"
                " event_id, occurred_at)"
                " VALUES ($1, 1, 'test.started', 1, $2::jsonb, '{}'::jsonb, $3, now())",
                stream_id,
                msgspec.json.encode(OLD_PAYLOAD).decode(),
                event_id,
            )
    finally:
        await conn.close()
    return event_id


@pytest.mark.usefixtures("test_started_v2")
async def test_old_payloads_are_upcast_on_read(
    store: EventStore, pool: asyncpg.Pool, database_url: str
) -> None:
    """A stored schema-1 event reads back, by stream and by read_all, as the current struct."""
    old_id = await _insert_v1_event(database_url, "run-old")
    new = NewEvent(event=TestStarted(result_id="result-new", test_id="test-new", worker="w2"))
    await store.append("run-old", [new], 1)
    stored_versions = await pool.fetch(
        "SELECT schema_version FROM events WHERE stream_id = 'run-old' ORDER BY version"
    )
    assert [row["schema_version"] for row in stored_versions] == [1, 2]

    upcast = TestStarted(result_id="result-old", test_id="test-old", attempt=3, worker="legacy")
    by_stream = await store.read_stream("run-old")
    assert [e.event for e in by_stream] == [upcast, new.event]
    assert [e.event_id for e in by_stream] == [old_id, new.event_id]
    assert [e.schema_version for e in by_stream] == [1, 2]
    by_all = await read_until(store, ORIGIN, 2)
    assert [e.event for e in by_all] == [upcast, new.event]
    assert [e.event for e in await store.read_stream("run-old", from_version=2)] == [new.event]


async def test_an_old_payload_without_its_upcaster_fails_to_read(
    store: EventStore, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With schema 2 current and no schema-1 upcaster, reading the old event raises."""
    monkeypatch.setattr(TestStarted, "schema_version", 2)
    codec.unregister_upcaster("test.started", 1)  # (the registry is restored after the test)
    await _insert_v1_event(database_url, "run-old")

    with pytest.raises(codec.UnknownEventTypeError, match="from schema version 1"):
        await store.read_stream("run-old")


async def test_iterate_all_reads_ahead_and_gives_the_connection_back_when_left(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """iterate_all fetches the next page while one is consumed; leaving early cancels it.

    The pages are those of read_all in a loop, and a consumer that stops after
    the first event leaves no connection busy behind it.
    """
    total = await _write_mixed_history(store, pool)
    everything = await read_until(store, ORIGIN, total)
    assert ids([e async for e in store.iterate_all(page_size=4)]) == ids(everything)

    free = pool.get_idle_size()
    events = store.iterate_all(page_size=2)
    first = await anext(events)
    assert first.event_id == everything[0].event_id
    await events.aclose()  # the read-ahead of the next page is cancelled and released
    deadline = asyncio.get_running_loop().time() + 5
    while pool.get_idle_size() < free:
        assert asyncio.get_running_loop().time() < deadline, "a connection was not given back"
        await asyncio.sleep(0.01)
    assert ids(await store.read_all(ORIGIN, limit=3)) == ids(everything[:3])
