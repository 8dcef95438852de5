"""The runner's commands: start claimed tests, record outcomes. Decisions are pure.

Both run inside `commands.decide`, on the locked current state of the run, so
they refuse what the state forbids: no start after the run ended, no second
outcome for a test, no attempt past the limit.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import msgspec

from events.store import EventStore
from events.types import (
    Metadata,
    NewEvent,
    RunEvent,
    TestBlocked,
    TestErrored,
    TestFailed,
    TestPassed,
    TestSnapshot,
    TestStarted,
)
from projections import readmodel
from projections.fold import RunView
from projections.resources import TERMINAL, Running
from service.runs.write import decide, writing

Outcome = TestPassed | TestFailed | TestBlocked | TestErrored



class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """A test a runner holds the lease of, with everything needed to execute it."""

    result_id: str
    run_id: str
    organisation_id: str
    attempt: int
    # What run.created froze of the saved test (the queue row keeps it as `task`).
    snapshot: TestSnapshot


def decide_starts(
    view: RunView, claims: Sequence[Claim], runner: str, max_attempts: int
) -> tuple[list[RunEvent], list[Claim], list[str]]:
    """What to record for claimed tests: the events, the claims to execute, the rows to drop.

    A claim past `max_attempts` (its earlier runners died) is `test.errored`.
    After the run ended nothing starts; a test still `running` then (its runner
    was lost) is `test.errored` so the run's counts can settle.
    """
    events: list[RunEvent] = []
    execute: list[Claim] = []
    drop: list[str] = []
    run_over = isinstance(view.run.lifecycle, TERMINAL)
    for claim in claims:
        result = view.results.get(claim.result_id)
        if result is None or isinstance(result.lifecycle, TERMINAL):
            drop.append(claim.result_id)
            continue
        test_id = result.test_id
        if run_over:
            if isinstance(result.lifecycle, Running):
                events.append(
                    TestErrored(
                        result_id=claim.result_id,
                        test_id=test_id,
                        message="its runner was lost after the run ended",
                        attempts=claim.attempt - 1,
                    )
                )
            else:
                drop.append(claim.result_id)
            continue
        if claim.attempt > max_attempts:
            events.append(
                TestErrored(
                    result_id=claim.result_id,
                    test_id=test_id,
                    message=f"no runner finished it in {max_attempts} attempts",
                    attempts=max_attempts,
                )
            )
            continue
        events.append(
            TestStarted(
                result_id=claim.result_id, test_id=test_id, attempt=claim.attempt, worker=runner
            )
        )
        execute.append(claim)
    return events, execute, drop


def decide_outcomes(view: RunView, outcomes: Sequence[NewEvent]) -> list[NewEvent]:
    """The outcomes that still apply: one per test, and none for a terminal test."""
    events: list[NewEvent] = []
    seen: set[str] = set()
    for outcome in outcomes:
        result_id = _result_id(outcome.event)
        result = view.results.get(result_id)
        if result is None or isinstance(result.lifecycle, TERMINAL) or result_id in seen:
            continue
        seen.add(result_id)
        events.append(outcome)
    return events


def _result_id(event: RunEvent) -> str:
    if isinstance(event, TestPassed | TestFailed | TestBlocked | TestErrored):
        return event.result_id
    msg = f"not an outcome: {type(event).__name__}"
    raise TypeError(msg)


async def start(
    pool: asyncpg.Pool,
    store: EventStore,
    run_id: str,
    claims: Sequence[Claim],
    *,
    runner: str,
    max_attempts: int,
    metadata: Metadata,
    known: RunView | None = None,
) -> tuple[list[Claim], RunView | None]:
    """Record `test.started` for a run's claimed tests.

    Returns the claims to execute, and the run's state after (for `known`).
    """
    execute: list[Claim] = []
    drop: list[str] = []

    def decision(view: RunView) -> list[RunEvent]:
        events, chosen, dropped = decide_starts(view, claims, runner, max_attempts)
        execute.extend(chosen)
        drop.extend(dropped)
        return events

    async with writing(pool, store) as writes:
        decided = await decide(
            writes,
            run_id,
            {c.result_id for c in claims},
            decision,
            metadata=metadata,
            known=known,
        )
        if decided is None:
            drop = [c.result_id for c in claims]
        if drop:
            await readmodel.dequeue(writes.conn, drop)
    return execute, decided.after if decided is not None else None


async def record(
    pool: asyncpg.Pool,
    store: EventStore,
    run_id: str,
    outcomes: Sequence[NewEvent],
    *,
    metadata: Metadata,
    known: RunView | None = None,
) -> RunView | None:
    """Record the outcomes (events with the time each test ended) of a run's tests.

    The decision that makes the last test terminal also appends `run.completed`.
    Returns the run's state after (for `known`).
    """
    async with writing(pool, store) as writes:
        decided = await decide(
            writes,
            run_id,
            {_result_id(o.event) for o in outcomes},
            lambda view: decide_outcomes(view, outcomes),
            metadata=metadata,
            known=known,
        )
    if decided is None:
        return None
    return decided.after


def result_id_of(outcome: NewEvent) -> str:
    """The result an outcome event is about."""
    return _result_id(outcome.event)
