"""Each saved test's latest run summaries: an async projection of the run streams.

For every test it keeps the latest result that started, the latest that passed
and the latest that failed, as the API's LatestBlockTestRunSummary. "Latest" is
by start time, so applying events in commit order, or the same batch twice,
gives the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from events.types import RecordedEvent
from projections.resources import TERMINAL, WorkflowTestResult

_decode_result = msgspec.json.Decoder(WorkflowTestResult).decode
_encode = msgspec.json.Encoder().encode


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One result of a saved test, summarised (the API's LatestBlockTestRunSummary)."""

    run_record_id: str
    run_id: str
    status: str
    outcome: str | None
    started_at: datetime
    completed_at: datetime | None
    duration_ms: int | None
    workflow_draft_fingerprint: str
    block_config_fingerprint: str
    # SDK 0.0.160's name of `block_config_fingerprint`.
    block_execution_fingerprint: str
    validity_fingerprint: str
    handle_inputs_fingerprint: str
    assertions_passed: int = 0
    assertions_failed: int = 0
    blocked_assertions: int = 0


_decode_summary = msgspec.json.Decoder(RunSummary).decode
_RESULTS = "SELECT id, organisation_id, test_id, validity_fingerprint, resource FROM test_results"

# Per test, the results its three summaries can come from: the latest finished
# (terminal after starting), the latest passing and the latest failing, "latest"
# as `_later` orders them (start time, then id in code-point order).
_FINISHED = ", ".join(f"'{kind.__struct_config__.tag}'" for kind in TERMINAL)
_LATEST_OF_EACH_TEST = " UNION ".join(
    f"""(SELECT DISTINCT ON (test_id COLLATE "C") id FROM finished{where}
      ORDER BY test_id COLLATE "C", started_at DESC, id COLLATE "C" DESC)"""
    for where in ("", " WHERE status = 'completed' AND verdict = 'passed'",
                  " WHERE status = 'completed' AND verdict = 'failed'")
)  # fmt: skip
# One scan of the narrow columns, three sorts; then the chosen rows' resources.
_CHOSEN = f"""
WITH finished AS MATERIALIZED (
    SELECT id, test_id, started_at, status, verdict FROM test_results
     WHERE started_at IS NOT NULL AND status IN ({_FINISHED})
)
{_RESULTS} WHERE id IN ({_LATEST_OF_EACH_TEST})
"""

# A batch's merged summaries, one row per test, in one statement.
_UPSERT_SUMMARIES = """
INSERT INTO test_run_summaries (test_id, organisation_id, latest, latest_passing, latest_failing)
SELECT * FROM unnest($1::text[], $2::text[], $3::json[], $4::json[], $5::json[])
ON CONFLICT (test_id) DO UPDATE
   SET latest = EXCLUDED.latest, latest_passing = EXCLUDED.latest_passing,
       latest_failing = EXCLUDED.latest_failing
"""


def summarise(result: WorkflowTestResult, validity_fingerprint: str) -> RunSummary | None:
    """The summary of a result that has finished after starting (None before that).

    Like the reference API, a summary is written when its test finishes.
    """
    if result.timing.started_at is None or not isinstance(result.lifecycle, TERMINAL):
        return None
    summary = result.verdict_summary
    return RunSummary(
        run_record_id=result.id,
        run_id=result.workflow_test_run_id,
        status=result.lifecycle.__struct_config__.tag,  # type: ignore[arg-type]
        outcome=result.verdict,
        started_at=result.timing.started_at,
        completed_at=result.timing.completed_at,
        duration_ms=result.timing.duration_ms,
        workflow_draft_fingerprint=result.workflow_draft_fingerprint,
        block_config_fingerprint=result.block_config_fingerprint,
        block_execution_fingerprint=result.block_config_fingerprint,
        validity_fingerprint=validity_fingerprint,
        handle_inputs_fingerprint=result.handle_inputs_fingerprint,
        assertions_passed=summary.assertions_passed if summary else 0,
        assertions_failed=summary.assertions_failed if summary else 0,
        blocked_assertions=summary.blocked_assertions if summary else 0,
    )


def _later(current: RunSummary | None, candidate: RunSummary) -> RunSummary:
    """The later of two summaries; a newer state of the same result replaces the old."""
    if current is None or current.run_record_id == candidate.run_record_id:
        return candidate
    if (candidate.started_at, candidate.run_record_id) > (
        current.started_at,
        current.run_record_id,
    ):
        return candidate
    return current


# A test's latest, latest passing and latest failing summaries.
Latest = tuple[RunSummary | None, RunSummary | None, RunSummary | None]
_NONE: Latest = (None, None, None)


def _candidates(
    rows: Sequence[asyncpg.Record],
) -> tuple[dict[str, list[RunSummary]], dict[str, str]]:
    """The summaries of these `test_results` rows by test, and each test's organisation."""
    candidates: dict[str, list[RunSummary]] = {}
    organisations: dict[str, str] = {}
    for row in rows:
        summary = summarise(_decode_result(row["resource"]), row["validity_fingerprint"])
        if summary is not None:
            candidates.setdefault(row["test_id"], []).append(summary)
            organisations[row["test_id"]] = row["organisation_id"]
    return candidates, organisations


def _merged(current: Latest, summaries: Sequence[RunSummary]) -> Latest:
    """A test's summaries with these new ones merged in (in any order: the later wins)."""
    latest, passing, failing = current
    for summary in sorted(summaries, key=lambda s: (s.started_at, s.run_record_id)):
        latest = _later(latest, summary)
        if summary.status == "completed" and summary.outcome == "passed":
            passing = _later(passing, summary)
        if summary.status == "completed" and summary.outcome == "failed":
            failing = _later(failing, summary)
    return latest, passing, failing


def _encoded(latest: Latest) -> tuple[bytes | None, ...]:
    return tuple(_encode(s) if s is not None else None for s in latest)


class LatestRunSummaries:
    """The async projection behind `latest_run_summary` and its passing/failing twins."""

    name = "latest_run_summaries"
    handles = frozenset({"test.passed", "test.failed", "test.blocked", "test.errored"})

    async def reset(self, conn: asyncpg.Connection) -> None:
        """Forget every row (a rebuild then replays the store from its origin)."""
        await conn.execute("DELETE FROM test_run_summaries")

    async def apply(self, conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> None:
        """Fold the results these events touched into their tests' summaries."""
        result_ids = sorted({getattr(event.event, "result_id", "") for event in events} - {""})
        rows = await conn.fetch(_RESULTS + " WHERE id = ANY ($1::text[])", result_ids)
        await self._merge(conn, rows)

    async def rebuild(self, conn: asyncpg.Connection) -> None:
        """Recompute every row from the results, in the caller's transaction.

        The rows are those of replaying every event whose result is in
        `test_results` now: each summary is a function of its result's current
        state, and merging keeps, per test, the latest finished result, the
        latest passing and the latest failing one, whatever the order. So only
        those three results per test are read (`_CHOSEN`), merged in memory
        and written with one COPY.
        """
        await self.reset(conn)
        tests: dict[str, tuple[str, Latest]] = {}
        cursor = await conn.cursor(_CHOSEN)
        while rows := await cursor.fetch(5000):
            candidates, organisations = _candidates(rows)
            for test_id, summaries in candidates.items():
                _, current = tests.get(test_id, ("", _NONE))
                tests[test_id] = (organisations[test_id], _merged(current, summaries))
        await conn.copy_records_to_table(
            "test_run_summaries",
            records=[(test_id, org, *_encoded(latest)) for test_id, (org, latest) in tests.items()],
            columns=["test_id", "organisation_id", "latest", "latest_passing", "latest_failing"],
        )

    async def _merge(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> None:
        """Merge these `test_results` rows into their tests' summaries."""
        candidates, organisations = _candidates(rows)
        if not candidates:
            return
        stored = {
            row["test_id"]: row
            for row in await conn.fetch(
                "SELECT test_id, latest, latest_passing, latest_failing FROM test_run_summaries"
                " WHERE test_id = ANY ($1::text[])",
                list(candidates),
            )
        }
        updates: list[tuple[Any, ...]] = []
        for test_id, summaries in candidates.items():
            row = stored.get(test_id)
            latest, passing, failing = (
                _decode_summary(row[column]) if row is not None and row[column] else None
                for column in ("latest", "latest_passing", "latest_failing")
            )
            merged = _merged((latest, passing, failing), summaries)
            updates.append((test_id, organisations[test_id], *_encoded(merged)))
        # One statement for the batch (a test appears once in `updates`).
        await conn.execute(_UPSERT_SUMMARIES, *(list(c) for c in zip(*updates, strict=True)))
