"""The rebuild swaps in read models equal to a fold of every stream, even while runs are written."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import asyncpg
import msgspec

from events.store import EventStore
from events.types import Metadata
from projections.rebuild import _ranges, rebuild
from service.models import (
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
)
from service.ops import keys
from service.registry import store as registry
from service.runs import commands as runs
from tests.helpers import API_KEY


async def _workflow_with_tests(pool: asyncpg.Pool) -> tuple[str, str]:
    await keys.bootstrap(pool, API_KEY)
    organisation = await pool.fetchval("SELECT id FROM organisations")
    workflow = await registry.create_workflow(pool, organisation, CreateWorkflowRequest())
    async with pool.acquire() as conn:
        block = await registry.create_block(
            conn, organisation, CreateBlockRequest(workflow_id=workflow.id, type="parse")
        )
        body = {
            "workflow_id": workflow.id,
            "target": {"block_id": block.id},
            "source": {"type": "manual"},
            "assertion": {"target": {"output_handle_id": "o"}, "condition": {"kind": "exists"}},
        }
        for _ in range(2):
            await registry.create_test(conn, organisation, msgspec.convert(body, CreateTestRequest))
    return organisation, workflow.id


async def _run_maker(pool: asyncpg.Pool) -> tuple[str, Callable[[str], Awaitable[str]]]:
    """The organisation, and a function that creates a run of its two tests (tagged)."""
    organisation, workflow_id = await _workflow_with_tests(pool)
    store = EventStore(pool)

    async def create(tag: str) -> str:
        run = await runs.create_run(
            pool,
            store,
            organisation_id=organisation,
            body=CreateRunRequest(workflow_id=workflow_id),
            metadata=Metadata(request_id=tag),
        )
        return run.id

    return organisation, create


async def test_rebuild_while_writers_append_loses_nothing(pool: asyncpg.Pool) -> None:
    """Runs created during a rebuild, including one held open across the swap, all end up in it."""
    _, create = await _run_maker(pool)

    existing = [await create(f"before-{i}") for i in range(300)]
    stop = asyncio.Event()
    created_during: list[str] = []

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            created_during.append(await create(f"during-{n}"))
            n += 1

    writers = [asyncio.create_task(writer()) for _ in range(3)]
    await asyncio.sleep(0.05)
    report = await rebuild(pool)
    stop.set()
    await asyncio.gather(*writers)

    assert report.swapped
    assert created_during, "the writers should have raced the rebuild"
    expected = set(existing) | set(created_during)
    stored = {row["id"] for row in await pool.fetch("SELECT id FROM test_runs")}
    assert expected == stored
    assert 2 * len(expected) == await pool.fetchval("SELECT count(*) FROM test_results")
    # A second, verifying rebuild finds the swapped-in tables equal to a fresh fold.
    again = await rebuild(pool, verify=True)
    assert {"test_runs": 0, "test_results": 0, "test_queue": 0} == again.differences


async def test_processes_fold_ranges_of_streams_into_the_same_rows(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """With a DSN, other processes fold ranges of the streams in this one's exported
    snapshot: the rows equal those one process folds (checked by --verify), and runs
    written during the rebuild are caught up as with one process."""
    organisation, create = await _run_maker(pool)

    existing = [await create(f"before-{i}") for i in range(90)]
    for run_id in existing[::3]:
        await runs.cancel_run(
            pool, EventStore(pool), organisation_id=organisation, run_id=run_id, metadata=Metadata()
        )
    one = await rebuild(pool)
    stop = asyncio.Event()
    created_during: list[str] = []

    async def writer() -> None:
        while not stop.is_set():
            created_during.append(await create(f"during-{len(created_during)}"))

    writing = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    three = await rebuild(pool, dsn=database_url, jobs=3)
    stop.set()
    await writing

    assert (3, 1) == (three.jobs, one.jobs)
    assert three.events >= one.events
    assert created_during, "the writer should have raced the rebuild"
    expected = set(existing) | set(created_during)
    assert expected == {row["id"] for row in await pool.fetch("SELECT id FROM test_runs")}
    # And one process, folding everything again, finds exactly the same rows.
    again = await rebuild(pool, verify=True)
    assert {"test_runs": 0, "test_results": 0, "test_queue": 0} == again.differences


def test_ranges_split_the_streams_by_events_and_cover_them_all() -> None:
    """Bounds are stream ids in order; each range holds about its share of the events."""
    streams = [{"stream_id": f"run-{i:03d}", "version": 1 + i % 7} for i in range(300)]
    total = sum(s["version"] for s in streams)
    ranges = _ranges(streams, total, 3)
    assert 3 == len(ranges)
    assert (None, None) == (ranges[0][0], ranges[-1][1])
    assert all(left[1] == right[0] for left, right in itertools.pairwise(ranges))

    def events_in(bounds: tuple[str | None, str | None]) -> int:
        low, high = bounds
        return sum(
            s["version"]
            for s in streams
            if (low is None or s["stream_id"] >= low) and (high is None or s["stream_id"] < high)
        )

    shares = [events_in(bounds) for bounds in ranges]
    assert total == sum(shares)
    assert all(abs(share - total / 3) <= 7 for share in shares), shares
    assert [(None, None)] == _ranges(streams, total, 1)
