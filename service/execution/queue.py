"""The work queue's runner-side SQL: claim with a lease, release for a retry.

Rows appear and disappear with the events (see projections/readmodel.py). A
claim takes rows whose `available_at` has passed, skipping rows other runners
hold locked, and pushes `available_at` to the end of the lease: if the runner
dies, the row simply becomes claimable again when the lease ends. Nothing here
decides a test's fate; the run's commands do, so a late or duplicate runner
can never record a second outcome.
"""

from __future__ import annotations

import asyncpg
import msgspec

from events.types import TestSnapshot
from service.runs.outcomes import Claim

_CLAIM = """
WITH claimable AS (
    SELECT result_id FROM test_queue
     WHERE available_at <= now()
     ORDER BY available_at, enqueued_at, position
     LIMIT $2
       FOR UPDATE SKIP LOCKED
)
UPDATE test_queue q
   SET lease_owner = $1,
       available_at = now() + make_interval(secs => $3),
       attempts = q.attempts + 1
  FROM claimable c
 WHERE q.result_id = c.result_id
RETURNING q.result_id, q.run_id, q.organisation_id, q.attempts, q.task
"""

_RELEASE_MANY = """
UPDATE test_queue
   SET lease_owner = NULL, available_at = now() + make_interval(secs => $3)
 WHERE result_id = ANY ($1::text[]) AND lease_owner = $2
"""

_decode_snapshot = msgspec.json.Decoder(TestSnapshot).decode


async def claim(pool: asyncpg.Pool, runner: str, limit: int, lease_seconds: float) -> list[Claim]:
    """Lease up to `limit` claimable tests for `lease_seconds`."""
    async with pool.acquire() as conn, conn.transaction():
        # A lease is the runners' state, not history: if a crash loses one, the
        # test is simply claimable again. So the claim does not wait for its
        # commit to reach the disk (events and read models always do).
        await conn.execute("SET LOCAL synchronous_commit = off")
        rows = await conn.fetch(_CLAIM, runner, limit, lease_seconds)
    return [
        Claim(
            result_id=row["result_id"],
            run_id=row["run_id"],
            organisation_id=row["organisation_id"],
            attempt=row["attempts"],
            snapshot=_decode_snapshot(row["task"]),
        )
        for row in rows
    ]


async def release(pool: asyncpg.Pool, claim: Claim, runner: str, delay_seconds: float) -> None:
    """Give a test back to the queue, claimable again after `delay_seconds` (a retry's backoff)."""
    await release_many(pool, [claim.result_id], runner, delay_seconds)


async def release_many(
    pool: asyncpg.Pool, result_ids: list[str], runner: str, delay_seconds: float
) -> None:
    """Give tests back in one statement (on shutdown, or when starting them failed)."""
    await pool.execute(_RELEASE_MANY, result_ids, runner, delay_seconds)
