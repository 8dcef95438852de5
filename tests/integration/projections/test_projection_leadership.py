"""Async projections: one leader per deployment, handover when it dies, no event lost."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from events.store import EventStore
from events.types import NewEvent, TestPassed
from projections import asynchronous
from projections.summaries import LatestRunSummaries
from service.http.handlers.common import POOL
from tests.helpers import ApiClient
from tests.integration.execution.test_execution import _finished, running, until
from tests.integration.projections.test_summaries import _caught_up, _two_tests

RUNS = "/v1/workflows/tests/runs"
KEY = asynchronous.LEADER_LOCK


async def _leader_pid(pool: asyncpg.Pool) -> int | None:
    pid = await pool.fetchval(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = $1 AND objid = $2",
        KEY >> 32,
        KEY & 0xFFFFFFFF,
    )
    return int(pid) if pid is not None else None


async def test_a_dead_leader_hands_over_and_nothing_is_lost(
    client: ApiClient, database_url: str
) -> None:
    """Runs execute while noise transactions hang and roll back; the leader is killed midway."""
    pool = client.http.server.app[POOL]
    workflow_id, _, _, _ = await _two_tests(client)
    stops = [asyncio.Event(), asyncio.Event()]
    followers = [
        asyncio.create_task(
            asynchronous.follow(
                pool,
                [LatestRunSummaries()],
                stop,
                connect=lambda: asyncpg.connect(database_url),
                idle_s=0.1,
                standby_s=0.1,
            )
        )
        for stop in stops
    ]
    store = EventStore(pool)
    rng = random.Random(3)

    async def noise() -> None:
        # Transactions held open for a while, some rolled back: the follower must
        # neither skip what commits late nor apply what never commits.
        for n in range(20):
            async with pool.acquire() as conn:
                transaction = conn.transaction()
                await transaction.start()
                await store.append(
                    f"run-noise{n}",
                    [NewEvent(event=TestPassed(result_id=f"none{n}", test_id="t"))],
                    0,
                    conn=conn,
                )
                await asyncio.sleep(rng.uniform(0, 0.2))
                if n % 3 == 0:
                    await transaction.rollback()
                else:
                    await transaction.commit()

    try:

        async def elected() -> bool:
            return await _leader_pid(pool) is not None

        await until(elected)
        first_leader = await _leader_pid(pool)
        noisy = asyncio.create_task(noise())
        async with running(pool):
            for index in range(4):
                run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
                await _finished(client, run["id"])
                if index == 1:
                    # Kill the leader's connection, and stop the process that led.
                    await pool.execute("SELECT pg_terminate_backend($1)", first_leader)
                    for stop, task in zip(stops, followers, strict=True):
                        if not task.done():
                            stop.set()
                            break
        await noisy
        deadline = asyncio.get_running_loop().time() + 30
        while (leader := await _leader_pid(pool)) in (None, first_leader):
            assert asyncio.get_running_loop().time() < deadline, "no follower took over"
            await asyncio.sleep(0.05)
        assert leader != first_leader
        await _caught_up(pool)
        followed = [
            dict(r) for r in await pool.fetch("SELECT * FROM test_run_summaries ORDER BY test_id")
        ]
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*followers)
    assert 2 == len(followed)
    await asynchronous.rebuild(pool, LatestRunSummaries())
    from_scratch = [
        dict(r) for r in await pool.fetch("SELECT * FROM test_run_summaries ORDER BY test_id")
    ]
    assert from_scratch == followed
    committed = await pool.fetchval("SELECT count(*) FROM events WHERE stream_id LIKE 'run-noise%'")
    assert 13 == committed, "the rolled-back noise never reached the store"


async def test_projections_status_shows_checkpoint_and_lag(
    client: ApiClient, database_url: str
) -> None:
    """`scripts/projections status` prints each projection's checkpoint and how far behind it is."""
    from tests.helpers import run_script

    pool = client.http.server.app[POOL]
    workflow_id, _, _, _ = await _two_tests(client)
    run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    async with running(pool):
        await _finished(client, run["id"])
    await _caught_up(pool)
    shown = run_script("projections", "status", database_url=database_url)
    assert 0 == shown.returncode, shown.stderr
    line = next(t for t in shown.stdout.splitlines() if t.startswith("latest_run_summaries"))
    assert 0 == int(line.split()[3])
    await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    behind = run_script("projections", "status", database_url=database_url)
    line = next(t for t in behind.stdout.splitlines() if t.startswith("latest_run_summaries"))
    assert 1 == int(line.split()[3])
