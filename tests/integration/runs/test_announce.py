"""Announce-after-commit lives in the write machinery (service.runs.write.writing).

A command never calls `store.announce` itself: the transaction it writes in
announces every stream it appended to, after the commit, and nothing when it
rolled back or appended nothing.
"""

from __future__ import annotations

import asyncpg
import pytest

from events.store import EventStore
from events.types import NewEvent, RunCancelled
from service.runs.write import writing
from tests.helpers import ApiClient


def _record_announcements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every stream announced from now on, in order."""
    announced: list[str] = []
    original = EventStore.announce

    def announce(self: EventStore, *stream_ids: str) -> None:
        announced.extend(stream_ids)
        original(self, *stream_ids)

    monkeypatch.setattr(EventStore, "announce", announce)
    return announced


async def test_writing_announces_what_it_wrote_after_the_commit(
    pool: asyncpg.Pool, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced = _record_announcements(monkeypatch)
    async with writing(pool, store) as writes:
        event = NewEvent(event=RunCancelled(reason="x"))
        await store.append("run-a1", [event], 0, conn=writes.conn)
        writes.wrote("run-a1")
        writes.wrote("run-a1")  # once per stream
        assert [] == announced  # not before the commit
    assert ["run-a1"] == announced
    assert 1 == await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'run-a1'")


async def _write_then_fail(pool: asyncpg.Pool, store: EventStore) -> None:
    async with writing(pool, store) as writes:
        event = NewEvent(event=RunCancelled(reason="x"))
        await store.append("run-b1", [event], 0, conn=writes.conn)
        writes.wrote("run-b1")
        raise RuntimeError("refused")


async def test_a_rolled_back_or_empty_write_announces_nothing(
    pool: asyncpg.Pool, store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    announced = _record_announcements(monkeypatch)
    with pytest.raises(RuntimeError, match="refused"):
        await _write_then_fail(pool, store)
    async with writing(pool, store):
        pass
    assert [] == announced
    assert 0 == await pool.fetchval("SELECT count(*) FROM events WHERE stream_id = 'run-b1'")


async def test_commands_announce_through_the_machinery(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Creating and cancelling a run announce its stream once each, without a call of their own."""
    announced = _record_announcements(monkeypatch)
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    await client.test(workflow["id"], block["id"])
    run = await client.call(
        "POST", "/v1/workflows/tests/runs", {"workflow_id": workflow["id"]}, expect=202
    )
    assert [f"run-{run['id']}"] == announced
    await client.call("POST", f"/v1/workflows/tests/runs/{run['id']}/cancel", expect=200)
    assert [f"run-{run['id']}"] * 2 == announced
