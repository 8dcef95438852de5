"""Prometheus metrics: HTTP traffic, runs and queue, the runner, the pool.

Every application has a registry of its own (tests build many apps in one
process, and the default registry refuses a second metric of the same name).
Counters and histograms are updated as things happen; the gauges that describe
the database (runs by status, queue depth) are read when `/metrics` is scraped.
"""

from __future__ import annotations

import asyncio
import typing

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from events.types import NewEvent, TestBlocked, TestErrored, TestFailed, TestPassed
from projections.resources import Lifecycle

log = structlog.get_logger("service.metrics")


# A method label outside this set would let any client mint new time series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_RUN_STATUSES = tuple(str(t.__struct_config__.tag) for t in typing.get_args(Lifecycle))
_OUTCOMES: dict[type, str] = {
    TestPassed: "passed",
    TestFailed: "failed",
    TestBlocked: "blocked",
    TestErrored: "errored",
}
_QUEUE_STATES = ("ready", "leased", "delayed")
# The scrape must stay cheap and never hang on a sick database.
_DATABASE_TIMEOUT_S = 2.0
_STATEMENT_TIMEOUT = f"SET LOCAL statement_timeout = {int(_DATABASE_TIMEOUT_S * 1000)}"

_RUNS_BY_STATUS = "SELECT status, count(*) AS n FROM test_runs GROUP BY status"
# ready: claimable now; leased: held by a runner until its lease ends;
# delayed: given back for a retry, claimable once its backoff ends.
_QUEUE_DEPTH = """
SELECT count(*) FILTER (WHERE available_at <= now()) AS ready,
       count(*) FILTER (WHERE available_at > now() AND lease_owner IS NOT NULL) AS leased,
       count(*) FILTER (WHERE available_at > now() AND lease_owner IS NULL) AS delayed
  FROM test_queue
"""


class Metrics:
    """The metrics of one application (and of the runner serving beside it).

    Args:
        registry: where the metrics live; a new registry (with the process,
            platform and garbage-collector metrics) when omitted.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        self.registry = registry
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.http_request_duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            registry=registry,
        )
        self.runs = Gauge(
            "test_runs",
            "Test runs by lifecycle status (read at scrape).",
            ["status"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            "test_queue_depth",
            "Tests in the queue: ready (claimable now), leased, delayed (retry backoff).",
            ["state"],
            registry=registry,
        )
        self.database_up = Gauge(
            "metrics_database_up",
            "1 when the last scrape read the database, 0 when it could not.",
            registry=registry,
        )
        self.pool_size = Gauge(
            "db_pool_size", "Connections open in the database pool.", registry=registry
        )
        self.pool_idle = Gauge(
            "db_pool_idle", "Open connections of the pool not in use.", registry=registry
        )
        self.tests_started = Counter(
            "runner_tests_started_total",
            "Test attempts the runner started (a retry starts again).",
            registry=registry,
        )
        self.outcomes_recorded = Counter(
            "runner_outcomes_recorded_total",
            "Test outcomes the runner recorded, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.attempt_failures = Counter(
            "runner_attempt_failures_total",
            "Test attempts that failed on infrastructure (retried, or errored at the last).",
            registry=registry,
        )
        self.tests_held = Gauge(
            "runner_tests_held",
            "Tests the runner claimed and has not yet recorded or released.",
            registry=registry,
        )
        for outcome in _OUTCOMES.values():
            self.outcomes_recorded.labels(outcome)

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request under its route template (never its raw path)."""
        method = method if method in _METHODS else "other"
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_request_duration.labels(method, route).observe(seconds)

    def outcomes(self, recorded: list[NewEvent]) -> None:
        """Count the test outcomes a runner has just recorded."""
        for new in recorded:
            label = _OUTCOMES.get(type(new.event))
            if label is not None:
                self.outcomes_recorded.labels(label).inc()

    async def observe_database(self, pool: asyncpg.Pool) -> None:
        """Read the pool's use, the runs by status and the queue depth, for a scrape.

        A database that fails or does not answer in time leaves the run and
        queue gauges empty (not stale) and `metrics_database_up` at 0.
        """
        self.pool_size.set(pool.get_size())
        self.pool_idle.set(pool.get_idle_size())
        try:
            # The client's deadline covers a connection that never answers; the
            # statement timeout stops the server's work when the client gives up.
            async with asyncio.timeout(_DATABASE_TIMEOUT_S):
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(_STATEMENT_TIMEOUT)
                    runs = await conn.fetch(_RUNS_BY_STATUS)
                    queue = await conn.fetchrow(_QUEUE_DEPTH)
        except Exception as error:
            # Whatever a sick database raises (PostgresError, InterfaceError, OSError,
            # TimeoutError, even InternalClientError from a connection killed mid-query):
            # these gauges are optional, the rest of the scrape must still be served.
            log.warning("metrics_database_failed", error=f"{type(error).__name__}: {error}")
            self.database_up.set(0)
            self.runs.clear()
            self.queue_depth.clear()
            return
        # No await below: a concurrent scrape never sees the gauges half set.
        self.database_up.set(1)
        self.runs.clear()
        for status in _RUN_STATUSES:
            self.runs.labels(status).set(0)
        for row in runs:
            self.runs.labels(row["status"]).set(row["n"])
        for state in _QUEUE_STATES:
            self.queue_depth.labels(state).set(queue[state] if queue is not None else 0)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format the scraper asked for, and its content type."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
