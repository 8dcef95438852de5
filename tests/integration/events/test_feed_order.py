"""Each stream's versions ascend in the feed, whatever its writers do before they append.

read_all orders by (transaction_id, global_position), and PostgreSQL gives a
transaction its id at its first write. A writer that takes its id early and
appends after a younger transaction appended to the same stream would put its
version after the younger one's in the stream but before it in the feed. The
store refuses that append (StaleTransactionError), so the feed never shows it.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from events.connection import init_connection
from events.errors import ConcurrencyError, StaleTransactionError
from events.store import ORIGIN, EventStore, checkpoint_of
from events.types import NewEvent, RecordedEvent, TestStarted

# Ways a transaction takes its transaction id (or a position) before it appends.
EARLY_DRAWS = {
    "xid": "SELECT pg_current_xact_id()",
    "identity": "INSERT INTO side (note) VALUES ('early')",
    "other-table": "UPDATE side SET note = 'touched' WHERE id = 1",
    "nextval": "SELECT nextval('side_seq')",
    "position": "SELECT nextval(pg_get_serial_sequence('events', 'global_position'))",
}
SIDE = """
CREATE TABLE side (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text);
CREATE SEQUENCE side_seq;
INSERT INTO side (note) VALUES ('first');
"""


class Rollback(Exception):
    """Raised inside a transaction (or a savepoint) to roll it back."""


def started(label: str) -> NewEvent:
    """A new TestStarted event with a fresh event id."""
    return NewEvent(event=TestStarted(result_id=f"result-{label}", test_id=f"test-{label}"))


def batch(count: int, label: str = "e") -> list[NewEvent]:
    """`count` new events with fresh ids."""
    return [started(f"{label}-{i}") for i in range(count)]


async def read_everything(store: EventStore, within: float = 15) -> list[RecordedEvent]:
    """The whole feed, once every stored event is final.

    Other sessions of the cluster may hold the horizon back for a moment: this
    waits for the feed to hold as many events as the table, never longer than
    `within` seconds, and asserts nothing by waiting.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    stored = await store.pool.fetchval("SELECT count(*) FROM events")
    while True:
        feed = [event async for event in store.iterate_all(page_size=7)]
        if len(feed) >= stored or loop.time() > deadline:
            return feed
        await asyncio.sleep(0.01)


def versions_in_feed(feed: list[RecordedEvent], stream_id: str) -> list[int]:
    """One stream's versions, in the order the feed gives them."""
    return [event.version for event in feed if event.stream_id == stream_id]


# --- the scripted interleaving ---------------------------------------------------


@pytest.mark.parametrize("draw", ["xid", "identity", "other-table"])
async def test_an_older_transaction_cannot_append_after_a_younger_one(
    store: EventStore, pool: asyncpg.Pool, draw: str
) -> None:
    """A takes its id; B appends v1 and commits; A's v2 is refused, and the feed stays in order.

    Without the refusal A's v2 would commit with the lower transaction id and
    read_all would yield v2 before v1. A's transaction is rolled back by the
    error; retried in a new transaction, the append succeeds.
    """
    await pool.execute(SIDE)
    async with pool.acquire() as conn_a:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            await conn_a.execute(EARLY_DRAWS[draw])
            await store.append("run-x", batch(1, "b"), 0)
            with pytest.raises(StaleTransactionError, match="run-x") as refused:
                await store.append("run-x", batch(1, "a"), 1, conn=conn_a)
        finally:
            await tx_a.rollback()
    assert isinstance(refused.value, ConcurrencyError)  # a retryable race, a 409 at the edge
    assert "new transaction" in (refused.value.__cause__.hint or "")  # type: ignore[union-attr]

    await store.append("run-x", batch(1, "a-again"), 1)
    assert versions_in_feed(await read_everything(store), "run-x") == [1, 2]


async def test_an_older_transaction_appending_at_the_end_is_refused_too(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """The same interleaving with expected_version None, on a caller's connection."""
    await store.append("run-x", batch(1, "setup"), 0)
    async with pool.acquire() as conn_a:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            await conn_a.execute(EARLY_DRAWS["xid"])
            await store.append("run-x", batch(1, "b"), None)
            with pytest.raises(StaleTransactionError):
                await store.append("run-x", batch(1, "a"), None, conn=conn_a)
        finally:
            await tx_a.rollback()
    assert versions_in_feed(await read_everything(store), "run-x") == [1, 2]


async def test_a_savepoint_rolled_back_gives_the_stream_back_to_younger_writers(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """A appends v1 in a savepoint and rolls it back; B appends v1; A's later v2 is refused.

    The savepoint's rollback releases the stream row and undoes A's mark on it,
    so B may append; A, older than B, may not append after it.
    """
    async with pool.acquire() as conn_a:
        tx_a = conn_a.transaction()
        await tx_a.start()
        try:
            savepoint = conn_a.transaction()
            await savepoint.start()
            await store.append("run-y", batch(1, "a-undone"), 0, conn=conn_a)
            await savepoint.rollback()
            await store.append("run-y", batch(1, "b"), 0)
            with pytest.raises(StaleTransactionError):
                await store.append("run-y", batch(1, "a"), 1, conn=conn_a)
        finally:
            await tx_a.rollback()
    feed = await read_everything(store)
    assert versions_in_feed(feed, "run-y") == [1]
    assert feed[0].event.result_id == "result-b-0"  # type: ignore[union-attr]


async def test_a_writer_that_locks_first_is_never_refused(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """Writers that lock a row of their own before appending (as the service locks its run)
    wait for each other and take their ids in turn: all of them append.
    """
    await pool.execute(SIDE)
    await store.append("run-z", batch(1, "create"), 0)

    async def locked_append(label: str) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT id FROM side WHERE id = 1 FOR UPDATE")
            version = await conn.fetchval("SELECT version FROM streams WHERE stream_id = 'run-z'")
            await asyncio.sleep(0.01)
            await store.append("run-z", batch(2, label), version, conn=conn)

    await asyncio.gather(*(locked_append(f"w{n}") for n in range(8)))
    assert versions_in_feed(await read_everything(store), "run-z") == list(range(1, 18))


async def test_appends_at_the_end_on_the_stores_connection_are_never_refused(
    store: EventStore, pool: asyncpg.Pool
) -> None:
    """24 racing appends at the end of one stream, each in its own transaction, all succeed.

    They queue on the stream before they draw their transaction ids, so none is
    older than the one before it (and the store retries the rare one that is).
    """
    await store.append("run-w", batch(1, "create"), 0)
    await asyncio.gather(*(store.append("run-w", batch(1, f"w{n}"), None) for n in range(24)))
    assert versions_in_feed(await read_everything(store), "run-w") == list(range(1, 26))


# --- the adversarial follower ----------------------------------------------------


async def test_a_follower_sees_each_streams_versions_in_order_under_adversarial_writers(
    store: EventStore, pool: asyncpg.Pool, database_url: str
) -> None:
    """A follower paging read_all (limits 1 to 1,000) for several seconds misses nothing and
    sees every stream's versions ascending.

    Writers append through the store's own connection and through their own
    transactions. Those take a transaction id or a position early (an identity
    draw, nextval, another table's write, pg_current_xact_id), hold 0-800 ms,
    write to two streams, roll back to savepoints, roll back, or have their
    backend terminated (pg_terminate_backend on a connection this test opened)
    before they commit. The follower must see every committed event exactly
    once, no rolled-back one, and for each stream versions 1, 2, 3... in order.
    """
    seed = int.from_bytes(os.urandom(4), "big")
    context = f"seed={seed}"
    await pool.execute(SIDE)
    shared = [f"run-shared-{n}" for n in range(5)]
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    happened: dict[str, int] = dict.fromkeys(
        ["stale", "conflict", "savepoint", "rollback", "terminated", "early", "held"], 0
    )
    loop = asyncio.get_running_loop()
    writing_until = loop.time() + 6
    writing = True

    async def own_transaction(rng: random.Random, label: str) -> None:
        victim = rng.random() < 0.08
        conn = await asyncpg.connect(database_url)
        await init_connection(conn)
        pending: list[uuid.UUID] = []
        try:
            tx = conn.transaction()
            await tx.start()
            try:
                if rng.random() < 0.7:
                    await conn.execute(EARLY_DRAWS[rng.choice(list(EARLY_DRAWS))])
                    happened["early"] += 1
                if rng.random() < 0.4:
                    await asyncio.sleep(rng.uniform(0, 0.8))
                    happened["held"] += 1
                for part, stream in enumerate(rng.sample(shared, rng.choice([1, 1, 2]))):
                    events = batch(rng.randint(1, 4), f"{label}-{part}")
                    version = None
                    if rng.random() < 0.5:
                        version = await conn.fetchval(
                            "SELECT version FROM streams WHERE stream_id = $1", stream
                        )
                        version = version or 0
                    if rng.random() < 0.2:
                        try:
                            async with conn.transaction():
                                await store.append(stream, events, version, conn=conn)
                                raise Rollback
                        except Rollback:
                            rolled_back.update(e.event_id for e in events)
                            happened["savepoint"] += 1
                            continue
                    await store.append(stream, events, version, conn=conn)
                    pending += [e.event_id for e in events]
                    if rng.random() < 0.3:
                        await asyncio.sleep(rng.uniform(0, 0.2))
                if victim:
                    killed = await pool.fetchval(
                        "SELECT pg_terminate_backend($1, 5000)", conn.get_server_pid()
                    )
                    assert killed, context
                    happened["terminated"] += 1
                    with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.InterfaceError)):
                        await tx.commit()
                    rolled_back.update(pending)
                    return
                if rng.random() < 0.15:
                    raise Rollback
            except (Rollback, ConcurrencyError, asyncpg.DeadlockDetectedError) as error:
                # Two streams locked in opposite orders deadlock: one of them rolls back.
                happened["stale" if isinstance(error, StaleTransactionError) else "rollback"] += 1
                await tx.rollback()
                rolled_back.update(pending)
                return
            await tx.commit()
            committed.update(pending)
        finally:
            if not conn.is_closed():
                await conn.close()

    async def through_the_store(rng: random.Random, label: str) -> None:
        stream = rng.choice(shared)
        events = batch(rng.randint(1, 12), label)
        version = await store.stream_version(stream) if rng.random() < 0.3 else None
        try:
            await store.append(stream, events, version)
        except ConcurrencyError:
            happened["conflict"] += 1
            rolled_back.update(e.event_id for e in events)
        else:
            committed.update(e.event_id for e in events)

    async def writer(number: int) -> None:
        rng = random.Random(seed + number)
        turn = 0
        while loop.time() < writing_until:
            work: Callable[[random.Random, str], Awaitable[None]] = (
                own_transaction if rng.random() < 0.6 else through_the_store
            )
            await work(rng, f"w{number}-t{turn}")
            turn += 1

    seen: list[RecordedEvent] = []
    out_of_order: list[tuple[str, int, int]] = []

    async def follower() -> None:
        rng = random.Random(seed - 1)
        checkpoint = ORIGIN
        last: dict[str, int] = {}
        drain_deadline: float | None = None
        while True:
            limit = rng.choice([1, 2, 3, 7, 50, 1000])
            page = await store.read_all(checkpoint, limit=limit)
            for event in page:
                if event.version != last.get(event.stream_id, 0) + 1:
                    out_of_order.append(
                        (event.stream_id, last.get(event.stream_id, 0), event.version)
                    )
                last[event.stream_id] = event.version
                seen.append(event)
            if page:
                checkpoint = checkpoint_of(page[-1])
            if not writing:
                drain_deadline = drain_deadline or loop.time() + 20
                caught_up = committed <= {event.event_id for event in seen}
                if (caught_up and not page) or loop.time() > drain_deadline:
                    return
            if len(page) < limit:
                await asyncio.sleep(rng.uniform(0, 0.005))

    following = asyncio.create_task(follower())
    try:
        await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(8))), timeout=40)
    finally:
        writing = False
    await asyncio.wait_for(following, timeout=30)

    seen_ids = [event.event_id for event in seen]
    assert out_of_order == [], f"a stream's versions went backwards in the feed ({context})"
    assert len(seen_ids) == len(set(seen_ids)), f"an event was read twice ({context})"
    assert not set(seen_ids) & rolled_back, f"a rolled-back event was read ({context})"
    assert set(seen_ids) == committed, f"committed events never read ({context})"
    table = {row["event_id"] for row in await pool.fetch("SELECT event_id FROM events")}
    assert table == committed, context
    assert seen_ids == [event.event_id for event in await read_everything(store)], context
    # The adversarial interleavings really happened.
    assert happened["stale"] > 0, f"{happened} ({context})"
    for kind in ("savepoint", "rollback", "terminated", "early", "held"):
        assert happened[kind] > 0, f"no {kind}: {happened} ({context})"
