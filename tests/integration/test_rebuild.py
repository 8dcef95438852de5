"""The rebuild swaps in read models equal to a fold of every stream, even while runs are written."""

from __future__ import annotations

import asyncio

import asyncpg
import msgspec

from events.store import EventStore
from events.types import Metadata
from projections.rebuild import rebuild
from service import keys, registry, runs
from service.models import (
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
)
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


async def test_rebuild_while_writers_append_loses_nothing(pool: asyncpg.Pool) -> None:
    """Runs created during a rebuild, including one held open across the swap, all end up in it."""
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
