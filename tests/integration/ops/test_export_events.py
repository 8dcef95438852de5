"""scripts/export-events: every event once, in commit order, filtered, in constant memory."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from events.store import EventStore
from events.types import Metadata
from service.models import (
    CreateBlockRequest,
    CreateRunRequest,
    CreateTestRequest,
    CreateWorkflowRequest,
)
from service.ops import keys
from service.registry import store as registry
from service.runs import commands as runs
from tests.helpers import API_KEY, ROOT, run_script


async def _workflow(pool: asyncpg.Pool, organisation: str) -> str:
    """A workflow of the organisation with one saved test, so runs have tests."""
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
        await registry.create_test(conn, organisation, msgspec.convert(body, CreateTestRequest))
    return workflow.id


async def _runs(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """Three runs of organisation A and two of organisation B: their ids by organisation."""
    await keys.bootstrap(pool, API_KEY)
    first = await pool.fetchval("SELECT id FROM organisations")
    async with pool.acquire() as conn:
        second = await keys.create_organisation(conn, "other")
    store = EventStore(pool)
    made: dict[str, list[str]] = {first: [], second: []}
    for organisation, count in ((first, 3), (second, 2)):
        workflow_id = await _workflow(pool, organisation)
        for i in range(count):
            run = await runs.create_run(
                pool,
                store,
                organisation_id=organisation,
                body=CreateRunRequest(workflow_id=workflow_id),
                metadata=Metadata(request_id=f"export-{i}"),
            )
            made[organisation].append(run.id)
    return made


def _export(database_url: str, *args: str) -> list[dict[str, Any]]:
    done = run_script("export-events", *args, database_url=database_url)
    assert 0 == done.returncode, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


async def _commit_order(pool: asyncpg.Pool) -> list[int]:
    rows = await pool.fetch(
        "SELECT global_position FROM events ORDER BY transaction_id, global_position"
    )
    return [row["global_position"] for row in rows]


async def test_export_has_every_event_once_in_commit_order(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """Every stored event is exported exactly once, in commit order, with its current data."""
    await _runs(pool)

    lines = _export(database_url)

    assert await _commit_order(pool) == [line["global_position"] for line in lines]
    assert len(lines) == len({line["event_id"] for line in lines})
    expected_keys = {
        "global_position",
        "stream_id",
        "version",
        "type",
        "schema_version",
        "event_id",
        "occurred_at",
        "recorded_at",
        "data",
        "metadata",
    }
    assert all(expected_keys == set(line) for line in lines)
    created = [line for line in lines if line["type"] == "run.created"]
    assert 5 == len(created)
    assert all(line["stream_id"] == f"run-{line['data']['run_id']}" for line in created)
    assert {"request_id": "export-0"} == {
        k: v for k, v in created[0]["metadata"].items() if k == "request_id"
    }


async def test_export_filters_by_run_organisation_and_time(
    pool: asyncpg.Pool, database_url: str
) -> None:
    """--run, --organisation and --since/--until each keep exactly the matching events."""
    made = await _runs(pool)
    first, second = list(made)
    everything = _export(database_url)

    one_run = made[first][1]
    by_run = _export(database_url, "--run", one_run)
    assert [e for e in everything if e["stream_id"] == f"run-{one_run}"] == by_run
    assert by_run

    by_organisation = _export(database_url, "--organisation", second)
    assert {f"run-{run_id}" for run_id in made[second]} == {e["stream_id"] for e in by_organisation}
    wanted = {f"run-{run_id}" for run_id in made[second]}
    assert [e for e in everything if e["stream_id"] in wanted] == by_organisation

    # A window from the third event's recording time (inclusive) to the last's (exclusive).
    times = await pool.fetch("SELECT recorded_at FROM events ORDER BY recorded_at")
    since, until = times[2]["recorded_at"], times[-1]["recorded_at"]
    window = _export(database_url, "--since", since.isoformat(), "--until", until.isoformat())
    positions = await pool.fetch(
        "SELECT global_position FROM events WHERE recorded_at >= $1 AND recorded_at < $2"
        " ORDER BY transaction_id, global_position",
        since,
        until,
    )
    assert [row["global_position"] for row in positions] == [e["global_position"] for e in window]
    assert 0 < len(window) < len(everything)

    refused = run_script(
        "export-events", "--since", "2026-01-01T00:00:00", database_url=database_url
    )
    assert 2 == refused.returncode
    assert "offset" in refused.stderr


def _peak_rss_kib(database_url: str, *args: str) -> tuple[int, int]:
    """Export to a file under `/usr/bin/time -v`; return (peak RSS in KiB, lines written)."""
    env = {**os.environ, "DATABASE_URL": database_url, "VENV": str(Path(sys.prefix))}
    with tempfile.TemporaryFile() as sink:
        done = subprocess.run(
            ["/usr/bin/time", "-v", "bash", str(ROOT / "scripts" / "export-events"), *args],
            env=env,
            stdout=sink,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == done.returncode, done.stderr
        sink.seek(0)
        lines = sum(1 for _ in sink)
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert peak is not None, done.stderr
    return int(peak.group(1)), lines


async def test_export_memory_stays_flat(pool: asyncpg.Pool, database_url: str) -> None:
    """Exporting 50,000 events of ~1 KB peaks at about the memory of exporting one event."""
    count = 50_000
    # Raw SQL is the fast way to store many events; each is a valid run.errored
    # with a 1 KB message, so holding them all would take well over 50 MB.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO streams (stream_id, version) VALUES ('run-bulk', $1)", count
        )
        await conn.execute(
            """
            INSERT INTO events (stream_id, version, type, data, event_id, occurred_at)
            SELECT 'run-bulk', g, 'run.errored',
                   jsonb_build_object('type', 'run.errored', 'message', repeat('x', 1000)),
                   gen_random_uuid(), now()
              FROM generate_series(1, $1) AS g
            """,
            count,
        )
    await pool.execute("ANALYZE events")

    baseline, one = _peak_rss_kib(database_url, "--run", "absent")
    peak, lines = _peak_rss_kib(database_url)

    assert 0 == one
    assert count == lines
    # Materialising the export would add 50,000 KB or more; streaming adds little.
    assert peak - baseline < 25_000, (baseline, peak)
