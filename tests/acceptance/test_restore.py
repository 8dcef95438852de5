"""A real pg_dump restored into another, younger cluster, then scripts/repair-after-restore."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from events.store import ORIGIN, Checkpoint, EventStore
from events.types import NewEvent, RunQueued
from service import db
from tests.acceptance.conftest import free_port
from tests.helpers import run_script

pytestmark = pytest.mark.slow

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*command: str, timeout: float = 60) -> None:
    """Run a PostgreSQL server tool as the postgres OS user (the server refuses root)."""
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *command],
        check=True,
        capture_output=True,
        timeout=timeout,
    )


def _tool(*command: str) -> None:
    """Run a PostgreSQL client tool (pg_dump, pg_restore), bounded in time."""
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture
def fresh_cluster() -> Iterator[str]:
    """A new PostgreSQL cluster of our own on a free port: yields its superuser DSN.

    A fresh cluster's transaction counter starts near 1000, far below a server
    that has been running tests. Always stopped (and deleted) afterwards.
    """
    if not (PG_BIN / "initdb").exists() or shutil.which("runuser") is None:
        pytest.skip("needs PostgreSQL 15 server binaries and runuser")
    folder = Path(tempfile.mkdtemp(prefix="testrun-restore-"))
    shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    port = free_port()
    started = False
    try:
        _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-N"
        )
        _as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(folder / "log"),
            "-o",
            f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "-t",
            "30",
            "start",
        )
        started = True
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"
            )
        shutil.rmtree(folder, ignore_errors=True)


async def _fill(pool: asyncpg.Pool) -> list[str]:
    """Twelve events over four streams, each append its own transaction; the commit order."""
    store = EventStore(pool)
    for round_ in range(3):
        for stream in range(4):
            await store.append(f"run-r{stream}", [NewEvent(event=RunQueued())], round_)
    rows = await pool.fetch("SELECT event_id FROM events ORDER BY transaction_id, global_position")
    return [str(row["event_id"]) for row in rows]


async def _read_all(pool: asyncpg.Pool, after: Checkpoint = ORIGIN) -> list[str]:
    return [str(event.event_id) async for event in EventStore(pool).iterate_all(after)]


async def _checkpoint(pool: asyncpg.Pool) -> Checkpoint:
    row = await pool.fetchrow(
        "SELECT transaction_id, global_position FROM projection_checkpoints WHERE name = 'probe'"
    )
    return Checkpoint(int(row["transaction_id"]), int(row["global_position"]))


async def test_restore_into_younger_cluster_then_repair(
    database_url: str, fresh_cluster: str, tmp_path: Path
) -> None:
    """After a restore into a younger cluster the feed misses old events until the repair.

    Then every event reads in its original order, new appends come after them,
    and an async projection's checkpoint still points at the same event.
    """
    source = await db.create_pool(database_url, min_size=1, max_size=2)
    try:
        order = await _fill(source)
        # An async projection that has read the first five events in commit order.
        fifth = await source.fetchrow(
            "SELECT transaction_id, global_position FROM events"
            " ORDER BY transaction_id, global_position OFFSET 4 LIMIT 1"
        )
        await source.execute(
            "INSERT INTO projection_checkpoints (name, transaction_id, global_position)"
            " VALUES ('probe', $1, $2), ('idle', '0', 0)",
            fifth["transaction_id"],
            fifth["global_position"],
        )
        old_low = int(await source.fetchval("SELECT min(transaction_id)::text::bigint FROM events"))
    finally:
        await source.close()

    dump = tmp_path / "store.dump"
    _tool("pg_dump", "-Fc", "-f", str(dump), "-d", database_url)
    admin = await asyncpg.connect(fresh_cluster)
    try:
        await admin.execute("CREATE DATABASE restored")
    finally:
        await admin.close()
    restored_url = fresh_cluster.rsplit("/", 1)[0] + "/restored"
    _tool("pg_restore", "--no-owner", "--exit-on-error", "-d", restored_url, str(dump))

    restored = await db.create_pool(restored_url, min_size=1, max_size=2)
    try:
        horizon = int(await restored.fetchval("SELECT pg_current_xact_id()::text::bigint"))
        # The precondition of the whole test: the old ids are above the new counter.
        assert old_low > horizon + 100, (old_low, horizon)

        # Before the repair: the feed sees nothing old, and a new append sorts first.
        assert [] == await _read_all(restored)
        async with restored.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            await EventStore(restored).append(
                "run-new", [NewEvent(event=RunQueued())], 0, conn=conn
            )
            new_tx = int(
                await conn.fetchval(
                    "SELECT transaction_id::text::bigint FROM events WHERE stream_id = 'run-new'"
                )
            )
            await transaction.rollback()
        assert new_tx < old_low

        repaired = run_script("repair-after-restore", database_url=restored_url)
        assert 0 == repaired.returncode, repaired.stderr
        assert "renumbered 12 transaction ids of 12 events" in repaired.stdout, repaired.stdout
        assert "checkpoint probe:" in repaired.stdout
        assert "checkpoint idle" not in repaired.stdout

        assert order == await _read_all(restored)
        checkpoint = await _checkpoint(restored)
        assert int(fifth["global_position"]) == checkpoint.global_position
        assert order[5:] == await _read_all(restored, checkpoint)
        idle = await restored.fetchrow(
            "SELECT transaction_id::text::bigint AS tx, global_position"
            " FROM projection_checkpoints WHERE name = 'idle'"
        )
        assert (0, 0) == (idle["tx"], idle["global_position"])

        # An existing stream takes appends again: its last appender's id, from the
        # old cluster's counter, was renumbered too.
        stream_id, version = await restored.fetchrow(
            "SELECT stream_id, version FROM streams ORDER BY stream_id LIMIT 1"
        )
        async with restored.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                await EventStore(restored).append(
                    stream_id, [NewEvent(event=RunQueued())], version, conn=conn
                )
            finally:
                await transaction.rollback()
        appended = await EventStore(restored).append("run-new", [NewEvent(event=RunQueued())], 0)
        after = [event async for event in EventStore(restored).iterate_all()]
        assert [*order, appended[0]] == [
            *[str(e.event_id) for e in after[:-1]],
            after[-1].global_position,
        ]

        # Twice is harmless: the second run finds everything in place.
        before_again = await restored.fetch(
            "SELECT global_position, transaction_id FROM events ORDER BY global_position"
        )
        again = run_script("repair-after-restore", database_url=restored_url)
        assert 0 == again.returncode, again.stderr
        assert "nothing to renumber" in again.stdout, again.stdout
        assert "checkpoints: nothing to change" in again.stdout
        assert before_again == await restored.fetch(
            "SELECT global_position, transaction_id FROM events ORDER BY global_position"
        )
    finally:
        await restored.close()


def test_precondition_tools_exist() -> None:
    """pg_dump and pg_restore of the same major version as the servers are on PATH."""
    assert shutil.which("pg_dump") is not None
    assert shutil.which("pg_restore") is not None
    assert os.access(PG_BIN / "pg_ctl", os.X_OK)
