"""A run's event feed: JSON pages by version, and live Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest

from events.store import EventStore
from events.streams import stream_of
from service import db
from service.http import feed
from service.http.handlers import events as event_handlers
from tests.helpers import API_KEY, OTHER_API_KEY, ApiClient
from tests.integration.execution.test_execution import (
    RUNS,
    _add_test,
    _assertion,
    _function_workflow,
    _pool,
    running,
    until,
)

SSE = {"Authorization": f"Bearer {API_KEY}", "Accept": "text/event-stream"}


def _events_path(run_id: str) -> str:
    return f"{RUNS}/{run_id}/events"


async def _run_with_tests(client: ApiClient, count: int) -> str:
    """A pending run of `count` passing function tests (nothing executes it yet)."""
    workflow_id, block_id = await _function_workflow(client)
    for n in range(count):
        await _add_test(
            client, workflow_id, block_id, {"name": "ACME", "n": n}, _assertion(expected="ACME")
        )
    created = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    return str(created["id"])


def _as_item(event: Any) -> dict[str, Any]:
    """What the feed should answer for a stored event, as plain JSON."""
    decoded: dict[str, Any] = json.loads(msgspec.json.encode(feed.item_of(event)))
    return decoded


class Reader:
    """Reads an SSE response: messages (`id`, `event`, `data`) and comment lines."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.messages: list[dict[str, Any]] = []
        self.comments: list[str] = []

    async def next(self, within: float = 30) -> dict[str, Any] | None:
        """The next message, or None at the end of the stream."""
        fields: dict[str, Any] = {}
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), within)
            if not raw:
                return None
            line = raw.decode().rstrip("\n")
            if line == "":
                if fields:
                    self.messages.append(fields)
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line)
                continue
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value

    async def rest(self) -> list[dict[str, Any]]:
        """Every message until the server ends the stream."""
        while await self.next() is not None:
            pass
        return self.messages


async def test_json_pages_walk_the_run_by_version(client: ApiClient, store: EventStore) -> None:
    """Paging with `after` and `limit` returns every event once, in order, then a null cursor."""
    run_id = await _run_with_tests(client, 3)
    async with running(_pool(client)):
        await until(lambda: _terminal(store, run_id))
    stored = await store.read_stream(stream_of(run_id), 1)
    pages: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": 2, **({"after": after} if after is not None else {})}
        page = await client.call("GET", _events_path(run_id), expect=200, **params)
        pages.append(page)
        after = page["list_metadata"]["after"]
        assert page["list_metadata"]["before"] is None
        if after is None:
            break
        assert str(page["data"][-1]["version"]) == after
    items = [item for page in pages for item in page["data"]]
    assert [_as_item(event) for event in stored] == items
    assert list(range(1, len(stored) + 1)) == [item["version"] for item in items]
    assert "run.created" == items[0]["type"]
    assert run_id == items[0]["data"]["run_id"]
    assert "type" not in items[0]["data"]
    # The default page is the whole (short) run, with nothing after it.
    whole = await client.call("GET", _events_path(run_id), expect=200)
    assert items == whole["data"]
    assert whole["list_metadata"] == {"before": None, "after": None}
    beyond = await client.call("GET", _events_path(run_id), expect=200, after=len(stored))
    assert {"data": [], "list_metadata": {"before": None, "after": None}} == beyond


async def _terminal(store: EventStore, run_id: str) -> bool:
    stored = await store.read_stream(stream_of(run_id), 1)
    return any(event.type in feed.TERMINAL_TYPES for event in stored)


async def test_unknown_or_foreign_runs_answer_404(client: ApiClient) -> None:
    """An unknown run, or another organisation's, is 404 for JSON and SSE alike."""
    run_id = await _run_with_tests(client, 1)
    unknown = await client.call("GET", _events_path("wftestrun_nope"), expect=404)
    assert "run_not_found" == unknown["detail"]["code"]
    foreign = await client.call("GET", _events_path(run_id), expect=404, key=OTHER_API_KEY)
    assert "run_not_found" == foreign["detail"]["code"]
    headers = {**SSE, "Authorization": f"Bearer {OTHER_API_KEY}"}
    async with client.http.get(_events_path(run_id), headers=headers) as response:
        assert 404 == response.status
        assert "application/json" == response.content_type


@pytest.mark.parametrize(
    ("name", "value"),
    [("after", "-1"), ("after", "x"), ("limit", "0"), ("limit", "1001"), ("limit", "ten")],
)
async def test_bad_after_or_limit_is_422(client: ApiClient, name: str, value: str) -> None:
    """A negative or non-numeric `after`, or a `limit` outside 1..1000, is a 422 naming it."""
    run_id = await _run_with_tests(client, 1)
    answer = await client.call("GET", _events_path(run_id), expect=422, **{name: value})
    assert ["query", name] == answer["detail"][0]["loc"]


async def test_sse_from_the_start_delivers_every_event_once_until_completed(
    client: ApiClient, store: EventStore
) -> None:
    """A client connected before a 200-test run starts receives its whole stream, in order."""
    run_id = await _run_with_tests(client, 200)
    async with client.http.get(_events_path(run_id), headers=SSE) as response:
        assert 200 == response.status
        assert "text/event-stream" == response.content_type
        assert "no-cache" == response.headers["Cache-Control"]
        reader = Reader(response)
        async with running(_pool(client)):
            received = await reader.rest()
    stored = await store.read_stream(stream_of(run_id), 1)
    assert "run.completed" == received[-1]["event"]
    assert [_as_item(event) for event in stored] == [message["data"] for message in received]
    assert [str(event.version) for event in stored] == [message["id"] for message in received]
    assert [event.type for event in stored] == [message["event"] for message in received]
    # 200 tests: created, queued, then a start and an outcome each, then completed.
    assert 200 * 2 < len(received)


async def test_reconnecting_with_last_event_id_delivers_the_rest_exactly_once(
    client: ApiClient, store: EventStore
) -> None:
    """A client that drops midway and resumes from its last id misses and repeats nothing."""
    run_id = await _run_with_tests(client, 200)
    hub = client.http.server.app[feed.FEED]
    async with running(_pool(client)):
        async with client.http.get(_events_path(run_id), headers=SSE) as response:
            reader = Reader(response)
            for _ in range(50):
                assert await reader.next() is not None
            first = list(reader.messages)
            response.close()
        # The server notices the gone client and lets go of its subscription.
        await until(_no_subscribers(hub))
        headers = {**SSE, "Last-Event-ID": first[-1]["id"]}
        async with client.http.get(_events_path(run_id), headers=headers) as response:
            second = await Reader(response).rest()
    stored = await store.read_stream(stream_of(run_id), 1)
    received = first + second
    assert [str(event.version) for event in stored] == [message["id"] for message in received]
    assert "run.completed" == received[-1]["event"]
    # Resuming after the terminal event: nothing more, and the stream ends at once.
    headers = {**SSE, "Last-Event-ID": received[-1]["id"]}
    async with client.http.get(_events_path(run_id), headers=headers) as response:
        assert [] == await Reader(response).rest()


def _no_subscribers(hub: feed.FeedHub) -> Any:
    async def check() -> bool:
        return hub.subscriber_count() == 0

    return check


async def test_heartbeats_arrive_while_the_run_is_idle(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pending run with no runner: after its events, keep-alive comments keep coming."""
    monkeypatch.setattr(event_handlers, "HEARTBEAT_S", 0.1)
    run_id = await _run_with_tests(client, 1)
    async with client.http.get(_events_path(run_id), headers=SSE) as response:
        reader = Reader(response)
        first = await reader.next()
        assert first is not None
        assert "run.created" == first["event"]

        async def heartbeats() -> None:
            while len(reader.comments) < 3:
                line = await response.content.readline()
                if line.startswith(b":"):
                    reader.comments.append(line.decode().strip())

        await asyncio.wait_for(heartbeats(), 5)
    assert [": keep-alive"] * 3 == reader.comments[:3]


async def test_the_stream_closes_after_a_cancel(client: ApiClient) -> None:
    """Cancelling the run sends `run.cancelled` and then ends the stream."""
    run_id = await _run_with_tests(client, 2)
    async with client.http.get(_events_path(run_id), headers=SSE) as response:
        reader = Reader(response)
        first = await reader.next()
        assert first is not None
        assert "run.created" == first["event"]
        await client.call("POST", f"{RUNS}/{run_id}/cancel", expect=200)
        received = await reader.rest()
    assert "run.cancelled" == received[-1]["event"]
    assert [str(n) for n in range(1, len(received) + 1)] == [m["id"] for m in received]


async def test_new_events_arrive_on_notify_not_on_the_poll(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the safety poll pushed to a minute, a new event still arrives at once (NOTIFY)."""
    monkeypatch.setattr(event_handlers, "POLL_S", 60.0)
    run_id = await _run_with_tests(client, 1)
    async with client.http.get(_events_path(run_id), headers=SSE) as response:
        reader = Reader(response)
        first = await reader.next()
        assert first is not None
        await client.call("POST", f"{RUNS}/{run_id}/cancel", expect=200)
        cancelled = await asyncio.wait_for(reader.next(), timeout=5)
    assert cancelled is not None
    assert "run.cancelled" == cancelled["event"]


async def test_a_listen_cancelled_midway_gives_its_connection_back(database_url: str) -> None:
    """`close` cancels a relisten in flight; if that lands while LISTEN runs, the
    connection still goes back to the pool (closed), or the pool could never close."""
    real = await db.create_pool(database_url, min_size=1, max_size=2)
    listening = asyncio.Event()

    class StuckListen:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        async def add_listener(self, *_: Any) -> None:
            listening.set()
            await asyncio.Event().wait()  # LISTEN that does not answer

        def __getattr__(self, name: str) -> Any:
            return getattr(self.conn, name)

    class Pool:
        async def acquire(self) -> StuckListen:
            return StuckListen(await real.acquire())

        async def release(self, conn: StuckListen) -> None:
            await real.release(conn.conn)

    hub = feed.FeedHub()
    listen = asyncio.create_task(hub.ensure_listening(Pool()))  # type: ignore[arg-type]
    await asyncio.wait_for(listening.wait(), 5)
    listen.cancel()
    with pytest.raises(asyncio.CancelledError):
        await listen
    await asyncio.wait_for(real.close(), 5)  # hangs if the connection was kept
