"""The inline projection: read-model rows written in the append's transaction.

`test_runs` holds one row per run and `test_results` one per test of a run; each
row holds the rendered resource and the stream version it reflects. Applying
events whose version the row already reflects changes nothing, so a replayed
or retried projection is harmless. `test_queue` holds one row per test that is
not terminal yet: the runners' work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from events.types import RecordedEvent, RunCreated
from projections.fold import RunView, results_needed, step
from projections.resources import TERMINAL, WorkflowTestResult, WorkflowTestRun

_encode = msgspec.json.Encoder().encode
_decode_run = msgspec.json.Decoder(WorkflowTestRun).decode
_decode_result = msgspec.json.Decoder(WorkflowTestResult).decode

RUN_COLUMNS = (
    "id",
    "organisation_id",
    "workflow_id",
    "test_id",
    "target_block_id",
    "status",
    "trigger_type",
    "created_at",
    "version",
    "resource",
    "workflow_revision",
)
RESULT_COLUMNS = (
    "id",
    "run_id",
    "organisation_id",
    "test_id",
    "block_id",
    "position",
    "status",
    "version",
    "validity_fingerprint",
    "resource",
    "started_at",
    "verdict",
)

QUEUE_COLUMNS = (
    "result_id",
    "run_id",
    "organisation_id",
    "position",
    "enqueued_at",
    "task",
    "available_at",
)

_DEQUEUE = "DELETE FROM test_queue WHERE result_id = ANY ($1::text[])"

_UPSERT_RUN = """
INSERT INTO test_runs (id, organisation_id, workflow_id, test_id, target_block_id, status,
                       trigger_type, created_at, version, resource, workflow_revision)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO UPDATE
   SET status = EXCLUDED.status, version = EXCLUDED.version, resource = EXCLUDED.resource
"""

_UPSERT_RESULTS = """
INSERT INTO test_results (id, run_id, organisation_id, test_id, block_id, position, status,
                          version, validity_fingerprint, resource, started_at, verdict)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::integer[], $7::text[], $8::bigint[], $9::text[], $10::json[],
                     $11::timestamptz[], $12::text[])
ON CONFLICT (id) DO UPDATE
   SET status = EXCLUDED.status, version = EXCLUDED.version, resource = EXCLUDED.resource,
       started_at = EXCLUDED.started_at, verdict = EXCLUDED.verdict
"""


def run_row(
    organisation_id: str, run: WorkflowTestRun, version: int, workflow_revision: int = 0
) -> tuple[Any, ...]:
    """The `test_runs` row of a run, in RUN_COLUMNS order (an update keeps the revision)."""
    return (
        run.id,
        organisation_id,
        run.workflow_id,
        run.test_id,
        run.target.block_id if run.target is not None else None,
        run.lifecycle.__struct_config__.tag,
        run.trigger.type,
        run.timing.created_at,
        version,
        _encode(run),
        workflow_revision,
    )


def result_row(
    organisation_id: str,
    result: WorkflowTestResult,
    version: int,
    position: int,
    validity_fingerprint: str,
) -> tuple[Any, ...]:
    """The `test_results` row of a result, in RESULT_COLUMNS order."""
    return (
        result.id,
        result.workflow_test_run_id,
        organisation_id,
        result.test_id,
        result.block_id,
        position,
        result.lifecycle.__struct_config__.tag,
        version,
        validity_fingerprint,
        _encode(result),
        result.timing.started_at,
        result.verdict,
    )


def queue_rows(created: RunCreated, at: Any) -> list[tuple[Any, ...]]:
    """The work-queue rows of a new run, in QUEUE_COLUMNS order: one per test."""
    return [
        (
            test.result_id,
            created.run_id,
            created.organisation_id,
            position,
            at,
            _encode(test),
            at,
        )
        for position, test in enumerate(created.tests)
    ]


async def load(
    conn: asyncpg.Connection,
    run_id: str,
    result_ids: set[str] | None = None,
    *,
    lock: bool = False,
    known: RunView | None = None,
) -> tuple[str, RunView] | None:
    """The stored run (with the results asked for, all when None) and its organisation.

    With `lock`, the run's row stays locked until the transaction ends: the
    commands that decide a run's next events hold it, so they never race.
    `known` is a state of the run this process computed earlier: while the
    stored version is still its version, it stands in for the stored rows and
    only the results it lacks are read.
    """
    row = await conn.fetchrow(
        "SELECT organisation_id, version,"
        " CASE WHEN version = $2 THEN NULL ELSE resource END AS resource"
        " FROM test_runs WHERE id = $1" + (" FOR UPDATE" if lock else ""),
        run_id,
        known.version if known is not None else -1,
    )
    if row is None:
        return None
    current = known if row["resource"] is None else None
    results: dict[str, WorkflowTestResult] = dict(current.results) if current else {}
    if result_ids is None:
        missing: set[str] | None = None
    else:
        missing = result_ids - results.keys()
    if missing is None:
        rows = await conn.fetch("SELECT resource FROM test_results WHERE run_id = $1", run_id)
    elif missing:
        rows = await conn.fetch(
            "SELECT resource FROM test_results WHERE run_id = $1 AND id = ANY ($2::text[])",
            run_id,
            list(missing),
        )
    else:
        rows = []
    for result in (_decode_result(r["resource"]) for r in rows):
        results[result.id] = result
    run = current.run if current is not None else _decode_run(row["resource"])
    return row["organisation_id"], RunView(run=run, results=results, version=row["version"])


class Projection:
    """Events folded onto a run's stored state, and the rows they change, ready to write.

    The commands fold their decided events here once: to see whether the run
    completes, and then to write exactly the rows that changed.
    """

    def __init__(self, organisation_id: str, view: RunView | None = None) -> None:
        self.organisation_id = organisation_id
        self.run = view.run if view is not None else None
        self.results = dict(view.results) if view is not None else {}
        self.version = view.version if view is not None else 0
        self.changed: dict[str, tuple[WorkflowTestResult, int]] = {}
        self.placement: dict[str, tuple[int, str]] = {}
        self.enqueue: list[tuple[Any, ...]] = []
        self.workflow_revision = 0

    def add(self, event: RecordedEvent) -> None:
        """Fold one more event (one the state already reflects changes nothing)."""
        if event.version <= self.version:
            return
        if isinstance(event.event, RunCreated):
            self.placement = {
                test.result_id: (index, test.validity_fingerprint)
                for index, test in enumerate(event.event.tests)
            }
            self.enqueue = queue_rows(event.event, event.occurred_at)
            self.workflow_revision = event.event.workflow_revision
        self.run, touched = step(self.run, self.results, event.event, event.occurred_at)
        for result in touched:
            self.results[result.id] = result
            self.changed[result.id] = (result, event.version)
        self.version = event.version

    async def write(self, conn: asyncpg.Connection) -> WorkflowTestRun:
        """Write the changed rows; return the run as it now is."""
        run = self.run
        if run is None:
            msg = "nothing to project"
            raise LookupError(msg)
        org = self.organisation_id
        await conn.execute(_UPSERT_RUN, *run_row(org, run, self.version, self.workflow_revision))
        rows = [
            result_row(org, result, at, *self.placement.get(result.id, (0, "")))
            for result, at in self.changed.values()
        ]
        if self.enqueue:
            # A new run: every row is new, so the bulk path (binary COPY) applies.
            await conn.copy_records_to_table("test_results", records=rows, columns=RESULT_COLUMNS)
            await conn.copy_records_to_table(
                "test_queue", records=self.enqueue, columns=QUEUE_COLUMNS
            )
        else:
            if rows:
                await conn.execute(_UPSERT_RESULTS, *(list(c) for c in zip(*rows, strict=True)))
            finished = [r.id for r, _ in self.changed.values() if isinstance(r.lifecycle, TERMINAL)]
            if finished:
                await dequeue(conn, finished)
        return run


async def dequeue(conn: asyncpg.Connection, result_ids: Sequence[str]) -> None:
    """Take these tests out of the work queue (they finished, or will never start)."""
    await conn.execute(_DEQUEUE, list(result_ids))


async def apply(conn: asyncpg.Connection, events: Sequence[RecordedEvent]) -> WorkflowTestRun:
    """Project freshly appended events of one run stream; return the run as it now is.

    Call it in the transaction that appended the events.
    """
    first = events[0]
    if isinstance(first.event, RunCreated):
        projection = Projection(first.event.organisation_id)
    else:
        loaded = await load(conn, _run_id(first.stream_id), results_needed(events))
        if loaded is None:
            msg = f"no read model for {first.stream_id}"
            raise LookupError(msg)
        projection = Projection(*loaded)
    for event in events:
        projection.add(event)
    return await projection.write(conn)


def _run_id(stream_id: str) -> str:
    return stream_id.removeprefix("run-")
