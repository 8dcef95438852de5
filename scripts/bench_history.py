"""A history of real run streams for scripts/bench: rebuild, memory and scan workloads.

Runs are made of the events the service writes (`run.created` with its test
snapshots, `test.started`, an outcome per test, `run.completed`), built with the
event types and encoded by the store's codec, then COPYed (binary) straight into
`events` in transactions of a few thousand events, several runs interleaved as
concurrent runs interleave. Runs re-run the saved tests of a few workflows, as
in life (what is per saved test, like the latest-run summaries, stays as small
as the registry). `streams` is filled in afterwards. The read models are left
empty: the rebuild makes them.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from events import codec
from events.types import (
    AssertionFailure,
    AssertionResult,
    Metadata,
    RunCompleted,
    RunCreated,
    RunEvent,
    Scope,
    TestFailed,
    TestPassed,
    TestSnapshot,
    TestStarted,
    Trigger,
)

# Tests per run, cycled: most runs are small, a few are large.
SIZES = (1, 3, 5, 10, 10, 20, 20, 50, 100)
# Runs re-run saved tests: each run is of one of these workflows, and runs its
# first saved tests (a workflow has max(SIZES)); the long runs have their own.
WORKFLOWS = 50
INTERLEAVED = 8  # runs written at the same time
COPY_EVENTS = 5_000  # events per COPY transaction
_COLUMNS = (
    "stream_id", "version", "type", "schema_version", "data", "metadata", "event_id",
    "occurred_at",
)  # fmt: skip
_metadata = msgspec.json.encode(Metadata(request_id="req_bench", actor="key_bench"))
_ORGANISATION = "org_bench"


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass
class History:
    """What was written: counts, and the runs the memory workload replays."""

    events: int = 0
    runs: int = 0
    big_run: str = ""
    big_run_events: int = 0
    small_run: str = ""
    small_run_events: int = 0
    run_sizes: dict[str, int] = field(default_factory=dict)


def _run_events(
    run_id: str, workflow: str, tests: int, at: datetime, rng: random.Random
) -> list[list[Any]]:
    """One completed run of a workflow's first `tests` saved tests, in the runner's batches."""
    snapshots = []
    for index in range(tests):
        test_id = f"wfnodetest_{workflow}_{index:05d}"
        block_config = {"entrypoint": "tests.run_functions:noop", "timeout_s": 30}
        handle_inputs = {"in": {"type": "json", "data": {"invoice": index, "total": 12.5}}}
        assertion = {
            "id": f"assert_{index}",
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": {"kind": "equals", "expected": "ACME"},
        }
        config_fp = _fingerprint("config", block_config)
        inputs_fp = _fingerprint("inputs", index)
        validity_fp = _fingerprint("validity", index)
        snapshots.append(
            TestSnapshot(
                result_id=f"wfnodetestrun_{run_id[-12:]}{index:05d}",
                test_id=test_id,
                test_name=f"invoice {index}",
                block_id="block_extract_invoice",
                block_type="function",
                block_config=block_config,
                handle_inputs=handle_inputs,
                assertion=assertion,
                handle_inputs_fingerprint=inputs_fp,
                block_config_fingerprint=config_fp,
                validity_fingerprint=validity_fp,
                execution_fingerprint=_fingerprint(config_fp, inputs_fp, validity_fp),
            )
        )
    created = RunCreated(
        run_id=run_id,
        organisation_id=_ORGANISATION,
        workflow_id=f"wf_{workflow}",
        workflow_version_id="wfv_bench",
        workflow_draft_fingerprint=_fingerprint("draft"),
        trigger=Trigger(type="api"),
        scope=Scope(type="workflow"),
        tests=snapshots,
        validity_fingerprint=_fingerprint("validity", tests),
        input_fingerprint=_fingerprint("input", tests),
        engine_fingerprint=_fingerprint("engine", tests),
        workflow_revision=1,
    )
    batches: list[list[RunEvent]] = [[created]]
    for first in range(0, tests, 256):  # RUNNER_BATCH: starts, then outcomes
        chunk = snapshots[first : first + 256]
        batches.append(
            [TestStarted(result_id=s.result_id, test_id=s.test_id, worker="bench") for s in chunk]
        )
    outcomes: list[RunEvent] = []
    for snapshot in snapshots:
        if rng.random() < 0.9:
            outcomes.append(
                TestPassed(
                    result_id=snapshot.result_id,
                    test_id=snapshot.test_id,
                    handle_outputs={"output-json-0": {"vendor": {"name": "ACME"}, "total": 12.5}},
                    assertion_result=AssertionResult(
                        assertion_id=str(snapshot.assertion["id"]),
                        condition_kind="equals",
                        outcome="passed",
                        actual_value="ACME",
                        expected_value="ACME",
                    ),
                    duration_ms=rng.randint(1, 40),
                )
            )
        else:
            outcomes.append(
                TestFailed(
                    result_id=snapshot.result_id,
                    test_id=snapshot.test_id,
                    handle_outputs={"output-json-0": {"vendor": {"name": "ACME Inc"}}},
                    assertion_result=AssertionResult(
                        assertion_id=str(snapshot.assertion["id"]),
                        condition_kind="equals",
                        outcome="failed",
                        actual_value="ACME Inc",
                        expected_value="ACME",
                        failure=AssertionFailure(
                            code="not_equal", message="'ACME Inc' is not equal to 'ACME'"
                        ),
                    ),
                    duration_ms=rng.randint(1, 40),
                )
            )
    for first in range(0, tests, 256):
        batches.append(outcomes[first : first + 256])
    batches[-1].append(RunCompleted())
    stream = f"run-{run_id}"
    rows: list[list[Any]] = []
    version = 0
    for batch in batches:
        at += timedelta(milliseconds=5)
        for event in batch:
            version += 1
            event_type, schema_version, data = codec.encode(event)
            rows.append(
                [
                    stream, version, event_type, schema_version, data, _metadata,
                    uuid.UUID(int=rng.getrandbits(128), version=4), at,
                ]
            )  # fmt: skip
    return rows


def _interleave(runs: list[list[list[Any]]]) -> list[list[Any]]:
    """Concurrent runs: their first events, then their next ones, ... (each stream in order)."""
    out: list[list[Any]] = []
    cursors = [0] * len(runs)
    step = 16
    while any(c < len(r) for c, r in zip(cursors, runs, strict=True)):
        for index, rows in enumerate(runs):
            out.extend(rows[cursors[index] : cursors[index] + step])
            cursors[index] += step
    return out


async def build(conn: asyncpg.Connection, events: int, big_run_tests: int) -> History:
    """Write about `events` events of completed runs, including one of `big_run_tests` tests.

    `conn` must be set up by `events.store.init_connection` (JSON as bytes).
    """
    rng = random.Random(6)  # noqa: S311  (reproducible shapes, not secrets)
    history = History()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    pending: list[list[Any]] = []

    async def flush(final: bool) -> None:
        nonlocal pending
        while len(pending) >= COPY_EVENTS or (final and pending):
            chunk, pending = pending[:COPY_EVENTS], pending[COPY_EVENTS:]
            await conn.copy_records_to_table("events", records=chunk, columns=_COLUMNS)

    big = f"wftestrun_big{uuid.uuid4().hex[:12]}"
    small = f"wftestrun_sml{uuid.uuid4().hex[:12]}"
    sizes = iter(SIZES * (events // 10 + 1))
    specials = [(big, "long", big_run_tests), (small, "tenth", max(1, big_run_tests // 10))]
    while history.events < events or specials:
        group = []
        for _ in range(INTERLEAVED):
            if specials and (history.runs % 97 == 50 or history.events >= events):
                run_id, workflow, tests = specials.pop(0)
            else:
                run_id, tests = f"wftestrun_{uuid.uuid4().hex[:20]}", next(sizes)
                workflow = f"w{history.runs % WORKFLOWS:03d}"
            rows = _run_events(run_id, workflow, tests, at, rng)
            at += timedelta(milliseconds=50)
            history.events += len(rows)
            history.runs += 1
            history.run_sizes[run_id] = len(rows)
            group.append(rows)
            if history.events >= events and not specials:
                break
        pending.extend(_interleave(group))
        await flush(final=False)
    await flush(final=True)
    await conn.execute(
        "INSERT INTO streams (stream_id, version, created_at)"
        " SELECT stream_id, max(version), min(occurred_at) FROM events GROUP BY stream_id"
    )
    history.big_run, history.big_run_events = big, history.run_sizes[big]
    history.small_run, history.small_run_events = small, history.run_sizes[small]
    return history
