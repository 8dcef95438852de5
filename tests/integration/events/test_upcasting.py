"""An event an older release stored (schema version 1) reads as the current version everywhere."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import msgspec

from projections.rebuild import rebuild
from service.http.handlers.common import POOL
from tests.helpers import ApiClient, run_script

RUNS = "/v1/workflows/tests/runs"


async def test_every_reader_sees_the_current_version(client: ApiClient, database_url: str) -> None:
    """The fold, the feed, replay, rebuild and export all read `worker` from a v1 `runner`."""
    pool = client.http.server.app[POOL]
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    test = await client.test(workflow["id"], block["id"])
    run = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    results = await client.call("GET", "/v1/workflows/tests/results", run_id=run["id"])
    result_id = results["data"][0]["id"]
    # As release 0.9 wrote it: schema version 1, the runner under `runner`.
    old = {
        "type": "test.started",
        "result_id": result_id,
        "test_id": test["id"],
        "attempt": 1,
        "runner": "host-of-release-0.9",
    }
    await pool.execute(
        "SELECT * FROM append_events($1, 1, $2, ARRAY['test.started'], ARRAY[1], $3, $4, $5)",
        f"run-{run['id']}",
        [uuid.uuid4()],
        [msgspec.json.encode(old)],
        [b"{}"],
        [datetime(2026, 1, 1, tzinfo=UTC)],
    )
    stored = await pool.fetchrow(
        "SELECT schema_version, data FROM events WHERE stream_id = $1 AND version = 2",
        f"run-{run['id']}",
    )
    assert 1 == stored["schema_version"]
    assert "host-of-release-0.9" == json.loads(stored["data"])["runner"]

    # Rebuild: the read models now fold the old event (as the old release's would have).
    report = await rebuild(pool)
    assert report.swapped
    fetched = await client.call("GET", f"{RUNS}/{run['id']}", expect=200)
    assert "running" == fetched["lifecycle"]["status"]
    assert 1 == fetched["counts"]["running"]
    assert 0 == (await rebuild(pool, verify=True)).differences["test_runs"]

    # Replay (the fold) and its verification.
    replayed = run_script("replay-run", run["id"], "--json", "--verify", database_url=database_url)
    assert 0 == replayed.returncode, replayed.stderr
    lines = [json.loads(line) for line in replayed.stdout.splitlines()]
    assert "host-of-release-0.9" == lines[1]["data"]["worker"]
    assert "runner" not in lines[1]["data"]

    # The feed.
    feed = await client.call("GET", f"{RUNS}/{run['id']}/events", expect=200)
    started = feed["data"][1]
    assert "test.started" == started["type"]
    assert "host-of-release-0.9" == started["data"]["worker"]
    assert "runner" not in started["data"]

    # The export.
    exported = run_script("export-events", "--run", run["id"], database_url=database_url)
    assert 0 == exported.returncode, exported.stderr
    events = [json.loads(line) for line in exported.stdout.splitlines()]
    assert "host-of-release-0.9" == events[1]["data"]["worker"]
