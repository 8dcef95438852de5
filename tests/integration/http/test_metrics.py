"""`/metrics`: HTTP traffic by route template, runs and queue, the runner, the pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from events.store import EventStore
from service import db
from service.config import Config
from service.execution import queue
from service.execution.runner import Runner
from service.http.app import create_app
from service.http.handlers.common import POOL
from service.http.measure import METRICS
from service.metrics import Metrics
from tests.helpers import OTHER_API_KEY, ApiClient
from tests.integration.execution.test_execution import CONFIG, until
from tests.integration.execution.test_execution import running as running_with

RUNS = "/v1/workflows/tests/runs"
RUN_TEMPLATE = "/v1/workflows/tests/runs/{run_id}"
RUN_STATUSES = ("pending", "queued", "running", "completed", "error", "cancelled")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(http: TestClient[Any, Any]) -> Samples:
    """GET /metrics with no API key; every sample by name and labels."""
    response = await http.get("/metrics")
    text = await response.text()
    assert 200 == response.status, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample `name{labels}`, or None when the scrape did not have it."""
    return samples.get((name, frozenset(labels.items())))


def labelled(samples: Samples, name: str) -> list[dict[str, str]]:
    """The label sets of every sample called `name`."""
    return [dict(labels) for sample_name, labels in samples if sample_name == name]


def _metrics(client: ApiClient) -> Metrics:
    return client.http.server.app[METRICS]


def _pool(client: ApiClient) -> asyncpg.Pool:
    return client.http.server.app[POOL]


@asynccontextmanager
async def running(client: ApiClient) -> AsyncIterator[Runner]:
    """An in-process runner counting into the app's metrics, for the duration of the block."""
    async with running_with(_pool(client), CONFIG, _metrics(client)) as runner:
        yield runner


async def _finished(client: ApiClient, run_id: str) -> None:
    async def done() -> bool:
        run = await client.call("GET", f"{RUNS}/{run_id}", expect=200)
        return bool(run["lifecycle"]["status"] in ("completed", "cancelled", "error"))

    await until(done)


async def _function_test(
    client: ApiClient, workflow_id: str, block_id: str, data: Any, condition: dict[str, Any]
) -> None:
    await client.test(
        workflow_id,
        block_id,
        source={"type": "manual", "handle_inputs": {"input": {"type": "json", "data": data}}},
        assertion={
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": condition,
        },
    )


async def test_requests_are_counted_by_route_template_and_the_status_sent(
    client: ApiClient,
) -> None:
    """A 201, 404s, a 422 and a 401 are counted with the status the client got, per template."""
    await client.call("POST", "/v1/workflows", {"name": "Invoices"}, expect=201)
    await client.call("GET", f"{RUNS}/wftestrun_missing_1", expect=404)
    await client.call("GET", f"{RUNS}/wftestrun_missing_2", expect=404)
    invalid = await client.call("POST", "/v1/workflows", {"name": 7}, expect=422)
    assert isinstance(invalid["detail"], list)
    await client.call("GET", "/no/such/path/abc", expect=404)
    await client.call("GET", "/v1/workflows", key=None, expect=401)

    samples = await scrape(client.http)

    def requests(method: str, route: str, status: str) -> float | None:
        return value(samples, "http_requests_total", method=method, route=route, status=status)

    assert 1 == requests("POST", "/v1/workflows", "201")
    assert 2 == requests("GET", RUN_TEMPLATE, "404")
    assert 1 == requests("POST", "/v1/workflows", "422")
    assert 1 == requests("GET", "unmatched", "404")
    assert 1 == requests("GET", "/v1/workflows", "401")
    assert 6 == sum(v for (name, _), v in samples.items() if name == "http_requests_total")
    routes = {labels["route"] for labels in labelled(samples, "http_requests_total")}
    assert {"/v1/workflows", RUN_TEMPLATE, "unmatched"} == routes
    durations = "http_request_duration_seconds_count"
    assert 2 == value(samples, durations, method="GET", route=RUN_TEMPLATE)
    assert 2 == value(samples, durations, method="POST", route="/v1/workflows")


async def test_metrics_needs_no_api_key_and_counts_itself(client: ApiClient) -> None:
    """/metrics answers without a key (still with a request id), in either exposition format."""
    response = await client.http.get("/metrics")
    assert 200 == response.status
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["X-Request-Id"]
    openmetrics = await client.http.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert 200 == openmetrics.status
    assert openmetrics.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await openmetrics.text()).endswith("# EOF\n")

    samples = await scrape(client.http)

    assert 2 == value(samples, "http_requests_total", method="GET", route="/metrics", status="200")
    assert 1 == value(samples, "metrics_database_up")


async def test_pool_gauges_show_connections_in_use(client: ApiClient) -> None:
    """db_pool_size and db_pool_idle are the pool's own numbers when scraped."""
    pool = _pool(client)
    async with pool.acquire(), pool.acquire():
        in_use = (pool.get_size(), pool.get_idle_size())
        samples = await scrape(client.http)
    assert in_use == (value(samples, "db_pool_size"), value(samples, "db_pool_idle"))
    assert in_use[0] >= 2
    released = (pool.get_size(), pool.get_idle_size())
    samples = await scrape(client.http)
    assert released == (value(samples, "db_pool_size"), value(samples, "db_pool_idle"))
    assert released[1] >= 2


async def test_run_and_queue_gauges_read_the_database_when_scraped(client: ApiClient) -> None:
    """Runs by status across organisations, and the queue's ready, leased and delayed tests."""
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    await client.test(workflow["id"], block["id"])
    created = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    other = await client.call("POST", "/v1/workflows", {"name": "B"}, key=OTHER_API_KEY)
    other_block = await client.call(
        "POST",
        "/v1/workflows/blocks",
        {"workflow_id": other["id"], "type": "extract"},
        key=OTHER_API_KEY,
        expect=201,
    )
    test_body = {
        "workflow_id": other["id"],
        "target": {"type": "block", "block_id": other_block["id"]},
        "source": {"type": "manual", "handle_inputs": {}},
        "assertion": {
            "target": {"output_handle_id": "output-json-0", "path": "x"},
            "condition": {"kind": "exists"},
        },
    }
    await client.call("POST", "/v1/workflows/tests", test_body, key=OTHER_API_KEY, expect=201)
    await client.call("POST", RUNS, {"workflow_id": other["id"]}, key=OTHER_API_KEY, expect=202)
    status = created["lifecycle"]["status"]

    samples = await scrape(client.http)

    expected_runs = dict.fromkeys(RUN_STATUSES, 0.0) | {status: 2.0}
    assert expected_runs == {s: value(samples, "test_runs", status=s) for s in RUN_STATUSES}
    assert {"ready": 2, "leased": 0, "delayed": 0} == {
        s: value(samples, "test_queue_depth", state=s) for s in ("ready", "leased", "delayed")
    }

    pool = _pool(client)
    claims = await queue.claim(pool, "metrics-test", 1, lease_seconds=60)
    samples = await scrape(client.http)
    assert {"ready": 1, "leased": 1, "delayed": 0} == {
        s: value(samples, "test_queue_depth", state=s) for s in ("ready", "leased", "delayed")
    }
    await queue.release(pool, claims[0], "metrics-test", delay_seconds=60)
    samples = await scrape(client.http)
    assert {"ready": 1, "leased": 0, "delayed": 1} == {
        s: value(samples, "test_queue_depth", state=s) for s in ("ready", "leased", "delayed")
    }

    await client.call("POST", f"{RUNS}/{created['id']}/cancel", expect=200)
    samples = await scrape(client.http)
    expected_runs = dict.fromkeys(RUN_STATUSES, 0.0) | {status: 1.0, "cancelled": 1.0}
    assert expected_runs == {s: value(samples, "test_runs", status=s) for s in RUN_STATUSES}
    assert 1 == value(samples, "metrics_database_up")


async def test_the_runner_counts_starts_outcomes_and_failed_attempts(
    client: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run with one test of each outcome: the runner's counters on the app's /metrics."""
    workflow = await client.workflow()
    block = await client.block(
        workflow["id"], type="function", config={"entrypoint": "tests.run_functions:invoice"}
    )
    equals_acme = {"kind": "equals", "expected": "ACME"}
    await _function_test(client, workflow["id"], block["id"], {"name": "ACME"}, equals_acme)
    await _function_test(client, workflow["id"], block["id"], {"name": "Other"}, equals_acme)
    bad_regex = {"kind": "matches_regex", "pattern": "("}
    await _function_test(client, workflow["id"], block["id"], {"name": "ACME"}, bad_regex)
    await _function_test(client, workflow["id"], block["id"], {"name": "boom"}, equals_acme)
    original = Runner._evaluate

    async def infrastructure_fails_for_boom(self: Runner, task: Any) -> Any:
        if task.handle_inputs["input"]["data"]["name"] == "boom":
            msg = "database hiccup"
            raise ConnectionResetError(msg)
        return await original(self, task)

    monkeypatch.setattr(Runner, "_evaluate", infrastructure_fails_for_boom)
    created = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    async with running(client):
        await _finished(client, created["id"])

    samples = await scrape(client.http)

    assert {"passed": 1, "failed": 1, "blocked": 1, "errored": 1} == {
        outcome: value(samples, "runner_outcomes_recorded_total", outcome=outcome)
        for outcome in ("passed", "failed", "blocked", "errored")
    }
    assert CONFIG.max_attempts == value(samples, "runner_attempt_failures_total")
    events = await EventStore(_pool(client)).read_stream(f"run-{created['id']}")
    started = sum(1 for event in events if event.type == "test.started")
    assert 3 + CONFIG.max_attempts == started
    assert started == value(samples, "runner_tests_started_total")
    assert 0 == value(samples, "runner_tests_held")


async def test_the_held_gauge_follows_the_tests_in_flight(client: ApiClient) -> None:
    """While slow tests run, runner_tests_held counts them; once recorded, it is back to 0."""
    workflow = await client.workflow()
    block = await client.block(
        workflow["id"], type="function", config={"entrypoint": "tests.run_functions:slow_invoice"}
    )
    for n in range(3):
        data = {"name": f"v{n}", "delay": 1.5}
        await _function_test(client, workflow["id"], block["id"], data, {"kind": "exists"})
    created = await client.call("POST", RUNS, {"workflow_id": workflow["id"]}, expect=202)
    samples = await scrape(client.http)
    assert 0 == value(samples, "runner_tests_held")

    async def three_held() -> bool:
        return 3 == value(await scrape(client.http), "runner_tests_held")

    async with running(client):
        await until(three_held)
        await _finished(client, created["id"])

    samples = await scrape(client.http)
    assert 0 == value(samples, "runner_tests_held")
    assert 3 == value(samples, "runner_tests_started_total")


async def test_a_scrape_survives_a_database_that_is_down(admin_url: str, database_url: str) -> None:
    """The database refuses connections: /metrics still answers 200, says so, and logs it."""
    pool = await db.create_pool(database_url, min_size=1, max_size=2)
    name = urlsplit(database_url).path.lstrip("/")
    try:
        async with TestClient(TestServer(create_app(pool, Config()))) as http:
            assert 200 == (await http.get("/healthz")).status
            samples = await scrape(http)
            assert 1 == value(samples, "metrics_database_up")
            assert 0 == value(samples, "test_queue_depth", state="ready")
            admin = await asyncpg.connect(admin_url)
            try:
                await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                    name,
                )
            finally:
                await admin.close()

            with capture_logs() as logs:
                samples = await scrape(http)

            assert 0 == value(samples, "metrics_database_up")
            assert [] == labelled(samples, "test_runs")
            assert [] == labelled(samples, "test_queue_depth")
            assert 1 == value(
                samples, "http_requests_total", method="GET", route="/healthz", status="200"
            )
            assert value(samples, "db_pool_size") is not None
            assert ["metrics_database_failed"] == [
                entry["event"] for entry in logs if entry["log_level"] == "warning"
            ]
    finally:
        pool.terminate()
