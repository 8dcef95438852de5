"""Reads of a run's history that the API has no endpoint for (the console shows them).

A run's results filtered by verdict, what changed since the previous run of the
same scope, a saved test's results across runs, and the heads of a run's events.
Each is bounded and scoped by organisation.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from events import reads as event_reads
from events.streams import stream_of
from service import paging
from service.models import ListMetadata

# How many tests each "what changed" list shows (the counts are always whole).
CHANGES_SHOWN = 20

# With the saved test's current name (results carry only its id); gone when deleted.
_RESULTS = """
SELECT id, position, test_id, verdict, status, resource,
       (SELECT t.name FROM workflow_tests t
         WHERE t.organisation_id = test_results.organisation_id AND t.id = test_results.test_id)
       AS test_name
  FROM test_results
 WHERE organisation_id = $1 AND run_id = $2
"""

_RUN_VERSION = "SELECT version FROM test_runs WHERE organisation_id = $1 AND id = $2"

# The run just before this one that ran the same scope of the same workflow.
_PREVIOUS_RUN = """
SELECT p.id FROM test_runs c JOIN test_runs p
    ON p.organisation_id = c.organisation_id AND p.workflow_id = c.workflow_id
   AND p.test_id IS NOT DISTINCT FROM c.test_id
   AND p.target_block_id IS NOT DISTINCT FROM c.target_block_id
   AND (p.created_at, p.id) < (c.created_at, c.id)
 WHERE c.organisation_id = $1 AND c.id = $2
 ORDER BY p.created_at DESC, p.id DESC LIMIT 1
"""

# Each test of this run against its result in the previous run: failing is a
# completed `failed` or `blocked`; a test the previous run did not have counts
# as not failing before.
_CHANGES = f"""
SELECT kind, test_id, id, total,
       (SELECT t.name FROM workflow_tests t
         WHERE t.organisation_id = $1 AND t.id = numbered.test_id) AS test_name
  FROM (
    SELECT kind, test_id, id,
           count(*) OVER (PARTITION BY kind) AS total,
           row_number() OVER (PARTITION BY kind ORDER BY position) AS n
      FROM (
        SELECT c.test_id, c.id, c.position,
               CASE WHEN c.verdict IN ('failed', 'blocked')
                         AND p.verdict IN ('failed', 'blocked') THEN 'still_failing'
                    WHEN c.verdict IN ('failed', 'blocked') THEN 'newly_failing'
                    WHEN c.verdict = 'passed'
                         AND p.verdict IN ('failed', 'blocked') THEN 'newly_passing'
               END AS kind
          FROM test_results c
          LEFT JOIN test_results p
            ON p.run_id = $3 AND p.organisation_id = $1 AND p.test_id = c.test_id
         WHERE c.organisation_id = $1 AND c.run_id = $2
      ) classified
     WHERE kind IS NOT NULL
) numbered
 WHERE n <= {CHANGES_SHOWN}
 ORDER BY kind, n
"""

# A saved test's results across runs, newest run first (keyset on the run's creation).
_TEST_RESULTS = """
SELECT r.id, r.created_at, x.id AS result_id, x.verdict, x.status, x.resource
  FROM test_results x JOIN test_runs r ON r.id = x.run_id AND r.organisation_id = x.organisation_id
 WHERE x.organisation_id = $1 AND x.test_id = $2
"""

VERDICT_FILTERS = {
    "passed": " AND verdict = 'passed'",
    "failed": " AND verdict = 'failed'",
    "blocked": " AND verdict = 'blocked'",
    "none": " AND verdict IS NULL",
}


async def run_version(pool: asyncpg.Pool, organisation_id: str, run_id: str) -> int:
    """The stream version the run's read model reflects (where a live feed resumes)."""
    version: int | None = await pool.fetchval(_RUN_VERSION, organisation_id, run_id)
    return version or 0


async def results_page(
    pool: asyncpg.Pool,
    organisation_id: str,
    run_id: str,
    verdict: str | None,
    page: paging.PageQuery,
) -> tuple[list[asyncpg.Record], ListMetadata]:
    """A page of the run's results in run order, optionally of one verdict."""
    sql = _RESULTS + VERDICT_FILTERS.get(verdict or "", "")
    return await paging.fetch_page(
        pool, sql, [organisation_id, run_id], page, key="position", key_type=int
    )


async def changes_since_previous(
    pool: asyncpg.Pool, organisation_id: str, run_id: str
) -> dict[str, Any] | None:
    """Tests newly failing, newly passing and still failing since the previous run of the scope.

    None when there is no previous run of the same scope.
    """
    previous = await pool.fetchval(_PREVIOUS_RUN, organisation_id, run_id)
    if previous is None:
        return None
    found: dict[str, Any] = {
        "previous_run_id": previous,
        "newly_failing": {"total": 0, "tests": []},
        "newly_passing": {"total": 0, "tests": []},
        "still_failing": {"total": 0, "tests": []},
    }
    for row in await pool.fetch(_CHANGES, organisation_id, run_id, previous):
        kind = found[row["kind"]]
        kind["total"] = row["total"]
        kind["tests"].append(
            {"test_id": row["test_id"], "result_id": row["id"], "name": row["test_name"]}
        )
    return found


async def event_heads(
    pool: asyncpg.Pool, run_id: str, after: int, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` of the run's events (version, type, time, actor, request id) after
    version `after`, never their data; and whether more follow."""
    rows = await event_reads.event_heads(pool, stream_of(run_id), after, limit + 1)
    return [dict(row) for row in rows[:limit]], len(rows) > limit


async def test_results_page(
    pool: asyncpg.Pool, organisation_id: str, test_id: str, page: paging.PageQuery
) -> tuple[list[asyncpg.Record], ListMetadata]:
    """A page of a saved test's results across runs, keyed on the runs' creation."""
    return await paging.fetch_page(pool, _TEST_RESULTS, [organisation_id, test_id], page, table="r")
