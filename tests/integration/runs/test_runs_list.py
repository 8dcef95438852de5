"""The runs list: every filter, and keyset pagination that never repeats or skips a run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.helpers import OTHER_API_KEY, ApiClient

RUNS = "/v1/workflows/tests/runs"


async def _walk(client: ApiClient, order: str, limit: int, **filters: Any) -> list[str]:
    """Every run id, page by page, following `after` until it is null."""
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": limit, "order": order, **filters}
        if after:
            params["after"] = after
        page = await client.call("GET", RUNS, expect=200, **params)
        assert len(page["data"]) <= limit
        seen += [run["id"] for run in page["data"]]
        after = page["list_metadata"]["after"]
        if after is None:
            return seen
        assert page["data"], "a page with a next page is never empty"


async def _workflow_with_test(client: ApiClient) -> tuple[str, str, str]:
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    test = await client.test(workflow["id"], block["id"])
    return workflow["id"], block["id"], test["id"]


@pytest.mark.parametrize("count", [0, 1, 5, 6, 13])
async def test_walks_in_both_orders_see_every_run_once(client: ApiClient, count: int) -> None:
    """0, 1, exactly one page (5), one past it (6) and several pages, ascending and descending."""
    workflow_id, _, _ = await _workflow_with_test(client)
    made = [
        (await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202))["id"]
        for _ in range(count)
    ]
    assert made == await _walk(client, "asc", 5)
    assert list(reversed(made)) == await _walk(client, "desc", 5)
    first = await client.call("GET", RUNS, expect=200, limit=5)
    assert (first["list_metadata"]["after"] is None) == (count <= 5)
    assert first["list_metadata"]["before"] is None


async def test_walks_while_runs_are_being_created(client: ApiClient) -> None:
    """A walk that runs while new runs arrive neither repeats nor skips the runs it started with."""
    workflow_id, _, _ = await _workflow_with_test(client)
    before = [
        (await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202))["id"]
        for _ in range(12)
    ]
    stop = asyncio.Event()

    async def create() -> None:
        for _ in range(30):  # bounded, so the ascending walk always ends
            if stop.is_set():
                return
            await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
            await asyncio.sleep(0)

    creator = asyncio.create_task(create())
    try:
        descending = await _walk(client, "desc", 3)
        ascending = await _walk(client, "asc", 3)
    finally:
        stop.set()
        await creator
    assert len(descending) == len(set(descending))
    assert len(ascending) == len(set(ascending))
    # Newest first: the runs that existed when the walk began all appear, in order.
    assert list(reversed(before)) == [r for r in descending if r in set(before)]
    assert before == ascending[: len(before)]


async def test_before_walks_back(client: ApiClient) -> None:
    """From the last page, `before` walks back to the first; both cursors at once is 400."""
    workflow_id, _, _ = await _workflow_with_test(client)
    made = [
        (await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202))["id"]
        for _ in range(7)
    ]
    page = await client.call("GET", RUNS, expect=200, limit=3, order="asc")
    while page["list_metadata"]["after"]:
        page = await client.call(
            "GET", RUNS, expect=200, limit=3, order="asc", after=page["list_metadata"]["after"]
        )
    back: list[str] = [r["id"] for r in page["data"]]
    while page["list_metadata"]["before"]:
        page = await client.call(
            "GET", RUNS, expect=200, limit=3, order="asc", before=page["list_metadata"]["before"]
        )
        back = [r["id"] for r in page["data"]] + back
    assert made == back
    error = await client.call("GET", RUNS, expect=400, before="a", after="b")
    assert "invalid_pagination" == error["detail"]["code"]


async def test_every_filter(client: ApiClient) -> None:
    """workflow_id, test_id, target_block_id, status, exclude_status, trigger_type, dates."""
    workflow_a, block_a, test_a = await _workflow_with_test(client)
    other_test = await client.test(workflow_a, block_a, name="second")
    workflow_b, block_b, _ = await _workflow_with_test(client)
    single = await client.call(
        "POST",
        RUNS,
        {"workflow_id": workflow_a, "scope": {"type": "single", "test_id": other_test["id"]}},
        expect=202,
    )
    whole_a = await client.call("POST", RUNS, {"workflow_id": workflow_a}, expect=202)
    whole_b = await client.call("POST", RUNS, {"workflow_id": workflow_b}, expect=202)
    await client.call("POST", f"{RUNS}/{whole_b['id']}/cancel", expect=200)

    async def ids(**filters: Any) -> list[str]:
        page = await client.call("GET", RUNS, expect=200, **filters)
        return [run["id"] for run in page["data"]]

    assert [whole_a["id"], single["id"]] == await ids(workflow_id=workflow_a)
    assert [whole_a["id"]] == await ids(test_id=test_a)
    assert [whole_a["id"], single["id"]] == await ids(test_id=other_test["id"])
    assert [whole_b["id"]] == await ids(target_block_id=block_b)
    assert [whole_b["id"]] == await ids(status="cancelled")
    assert [whole_a["id"], single["id"]] == await ids(exclude_status="cancelled")
    assert [whole_b["id"], whole_a["id"], single["id"]] == await ids(trigger_type="api")
    assert [] == await ids(trigger_type="schedule")
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert [] == await ids(from_date=future)
    assert 3 == len(await ids(from_date=past, to_date=future))
    assert [] == await ids(to_date=past)
    assert [whole_a["id"]] == await ids(workflow_id=workflow_a, test_id=test_a, status="pending")
    assert [] == await ids(workflow_id=workflow_a, key=OTHER_API_KEY)


@pytest.mark.parametrize(
    "params",
    [
        {"status": "finished"},
        {"exclude_status": "nope"},
        {"trigger_type": "cron"},
        {"from_date": "yesterday"},
        {"to_date": "2026-13-40"},
        {"sort_by": "name"},
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"order": "up"},
    ],
)
async def test_bad_filters_are_422(client: ApiClient, params: dict[str, str]) -> None:
    """Unknown statuses, triggers, dates, sort keys, limits and orders are 422."""
    error = await client.call("GET", RUNS, expect=422, **params)
    assert "query" == error["detail"][0]["loc"][0]


async def test_list_items_are_the_run_resource(client: ApiClient) -> None:
    """Each listed run is the same resource GET returns, freshness included."""
    workflow_id, _, _ = await _workflow_with_test(client)
    run = await client.call("POST", RUNS, {"workflow_id": workflow_id}, expect=202)
    listed = await client.call("GET", RUNS, expect=200)
    assert [await client.call("GET", f"{RUNS}/{run['id']}", expect=200)] == listed["data"]
