"""Deciding a run's next events: lock, load, decide, append and project in one transaction.

Every command that writes a run's stream goes through here:

1. it takes the writers' lock in shared mode (the rebuild takes it exclusively
   to swap the read models; taking it first, before any table lock, is what
   keeps the two from deadlocking);
2. it locks the run's read-model row, so decisions about one run happen one at
   a time and always see the latest state (no lost update, no retry storm);
3. it appends the decided events with the row's version as the expected
   version, and applies them to the read models, in the same transaction;
4. once that transaction has committed, it announces the streams it wrote
   (the NOTIFY that wakes live readers), never before and never forgotten.

Commands open the transaction with `writing(pool, store)` and write through
the `Writes` it yields (`decide`, `append_and_project`); the announcement is
`writing`'s, after the commit, and only when something was appended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg

from events import locks
from events.store import EventStore
from events.streams import stream_of
from events.types import Metadata, NewEvent, RecordedEvent, RunCompleted, RunEvent, utcnow
from projections import readmodel
from projections.fold import RunView
from projections.resources import TERMINAL, WorkflowTestRun


@dataclass
class Writes:
    """One write transaction on runs: its connection, the store, and the streams it wrote."""

    conn: asyncpg.Connection
    store: EventStore
    written: list[str] = field(default_factory=list)

    def wrote(self, stream_id: str) -> None:
        """Remember a stream appended to, to announce after the commit."""
        if stream_id not in self.written:
            self.written.append(stream_id)


@asynccontextmanager
async def writing(pool: asyncpg.Pool, store: EventStore) -> AsyncIterator[Writes]:
    """A transaction for commands on runs; after it commits, the streams written are announced.

    An exception rolls the transaction back and announces nothing.
    """
    async with pool.acquire() as conn:
        writes = Writes(conn, store)
        async with conn.transaction():
            yield writes
    if writes.written:
        store.announce(*writes.written)


async def enter_as_writer(conn: asyncpg.Connection) -> None:
    """Take the writers' lock (shared) for the rest of the transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", locks.WRITERS)


def recorded(new: NewEvent, stream_id: str, version: int, position: int) -> RecordedEvent:
    """The just-appended event as the fold sees it, without reading it back."""
    return RecordedEvent(
        stream_id=stream_id,
        version=version,
        global_position=position,
        transaction_id=0,
        event_id=new.event_id,
        schema_version=type(new.event).schema_version,
        occurred_at=new.occurred_at,
        recorded_at=new.occurred_at,
        event=new.event,
        metadata=new.metadata,
    )


async def append_and_project(
    writes: Writes,
    stream_id: str,
    events: Sequence[NewEvent],
    expected_version: int,
) -> WorkflowTestRun:
    """Append events and apply them to the read models, in the `writing` transaction."""
    conn = writes.conn
    positions = await writes.store.append(stream_id, events, expected_version, conn=conn)
    writes.wrote(stream_id)
    stored = [
        recorded(new, stream_id, expected_version + index + 1, position)
        for index, (new, position) in enumerate(zip(events, positions, strict=True))
    ]
    return await readmodel.apply(conn, stored)


@dataclass(frozen=True)
class Decided:
    """What a decision saw, and the run's state after its events."""

    before: RunView
    after: RunView

# A decision returns events, bare (they happen now) or with their envelope
# (a runner's outcome happened when the test finished, not when it is recorded).
Decision = Callable[[RunView], Sequence[RunEvent | NewEvent]]


async def decide(
    writes: Writes,
    run_id: str,
    result_ids: set[str] | None,
    decision: Decision,
    *,
    metadata: Metadata,
    organisation_id: str | None = None,
    known: RunView | None = None,
) -> Decided | None:
    """Run a decision on the locked, current state of a run, in the `writing` transaction.

    Args:
        writes: the transaction (from `writing`).
        run_id: the run.
        result_ids: the results the decision reads (None: all of them).
        decision: the pure function from the run's state to the events to append.
        metadata: the events' metadata.
        organisation_id: when given, a run of another organisation does not exist.
        known: the run as this process last left it (see `readmodel.load`).

    Returns the state the decision saw and the state after its events (None
    when the run does not exist). When the events leave every test terminal,
    `run.completed` is appended with them.
    """
    conn = writes.conn
    await enter_as_writer(conn)
    loaded = await readmodel.load(conn, run_id, result_ids, lock=True, known=known)
    if loaded is None or organisation_id not in (None, loaded[0]):
        return None
    org, view = loaded
    decided = decision(view)
    if not decided:
        return Decided(before=view, after=view)
    now = utcnow()
    events = [
        item
        if isinstance(item, NewEvent)
        else NewEvent(event=item, metadata=metadata, occurred_at=now)
        for item in decided
    ]
    # Fold the decision once: it tells whether the run completes, and it is
    # what the read models get (no reload after the append).
    projection = readmodel.Projection(org, view)
    stream = stream_of(run_id)
    for index, new in enumerate(events):
        projection.add(recorded(new, stream, view.version + index + 1, 0))
    completed = decide_completion(projection.run)
    if completed is not None:
        # The run completes when its last test does.
        last = max(event.occurred_at for event in events)
        done = NewEvent(event=completed, metadata=metadata, occurred_at=last)
        events.append(done)
        projection.add(recorded(done, stream, view.version + len(events), 0))
    await writes.store.append(stream, events, view.version, conn=conn)
    writes.wrote(stream)
    run = await projection.write(conn)
    return Decided(
        before=view,
        after=RunView(run=run, results=projection.results, version=projection.version),
    )


def decide_completion(run: WorkflowTestRun | None) -> RunCompleted | None:
    """`run.completed` when a run still going has every test terminal (`run` is the state
    after the decided events; `decide` appends it to them)."""
    if run is None or isinstance(run.lifecycle, TERMINAL):
        return None
    lifecycle = run.counts.lifecycle_counts
    if lifecycle.pending + lifecycle.queued + lifecycle.running == 0:
        return RunCompleted()
    return None
