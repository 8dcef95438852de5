"""Faults survived, nothing lost: PostgreSQL restarted or stopped, the server killed or stopped.

The PostgreSQL tests own a private server (tests/acceptance/pg.py), never the
shared one. Each test checks the ledger itself: one terminal event per test,
counts that add up, and `replay-run --verify`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer
from structlog.testing import capture_logs

from projections.asynchronous import follow
from projections.rebuild import ASYNC_PROJECTIONS
from service import db
from service.config import Config
from service.execution.runner import Runner
from service.http import availability
from service.http.app import create_app
from service.http.feed import FeedHub
from service.ops import keys
from tests.acceptance import pg
from tests.acceptance.conftest import free_port
from tests.helpers import API_KEY, run_script

ROOT = Path(__file__).resolve().parents[2]
KEY = "rtk_faults_test_key"
AUTH = {"Authorization": f"Bearer {KEY}"}
OUTCOME_TYPES = ["test.passed", "test.failed", "test.blocked", "test.errored"]

pytestmark = pytest.mark.slow

# No request of these tests may hang: a regression fails instead.
_CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=30)

# Short leases, so a test whose runner vanished runs again within seconds.
ENV = {
    "BOOTSTRAP_API_KEY": KEY,
    "FUNCTION_MODULES": "tests.run_functions",
    "RUNNER_CONCURRENCY": "8",
    "RUNNER_BATCH": "8",
    "TEST_TIMEOUT_S": "2",
    "LEASE_MARGIN_S": "1",
    "RETRY_BACKOFF_S": "0.1",
    "DB_ACQUIRE_TIMEOUT_S": "1",
    "LOG_LEVEL": "info",
    "PYTHONPATH": str(ROOT),
}


# -- processes ---------------------------------------------------------------------------------


def _spawn(command: str, database_url: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """`python -m service <command>`, its log lines (JSON) appended to `log`."""
    environment = {**os.environ, "DATABASE_URL": database_url, "HOST": "127.0.0.1", **ENV, **env}
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "service", command],
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=sink,
            cwd=ROOT,
        )


async def _serve(database_url: str, log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `serve`; return it once /healthz answers, and its base URL."""
    port = free_port()
    process = _spawn("serve", database_url, log, PORT=str(port), **env)
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}: {_events(log)}")
            try:
                async with http.get(f"{base_url}/healthz") as answer:
                    if answer.status == 200:
                        return process, base_url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    process.kill()
    pytest.fail("the server did not answer /healthz within 30 s")


async def _terminate(process: subprocess.Popen[bytes], within_s: float = 20) -> int:
    """SIGTERM and wait; killed if it outlives `within_s`. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return await asyncio.to_thread(process.wait, within_s)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _events(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


# -- the API -----------------------------------------------------------------------------------


class Api:
    """A small JSON client of a live server."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200) -> Any:
        async with self.http.request(
            method, self.base_url + path, json=body, headers=AUTH
        ) as answer:
            payload = await answer.json()
            assert expect == answer.status, payload
            return payload

    async def suite(self, tests: int, delay_s: float) -> str:
        """A workflow with `tests` saved tests of a sync function sleeping `delay_s`."""
        workflow = await self.call("POST", "/v1/workflows", {"name": "faults"}, expect=201)
        block = await self.call(
            "POST",
            "/v1/workflows/blocks",
            {
                "workflow_id": workflow["id"],
                "type": "function",
                "config": {"entrypoint": "tests.run_functions:sleepy"},
            },
            expect=201,
        )
        gate = asyncio.Semaphore(8)

        async def one(n: int, delay: float) -> None:
            async with gate:
                await self.call(
                    "POST",
                    "/v1/workflows/tests",
                    {
                        "workflow_id": workflow["id"],
                        "target": {"type": "block", "block_id": block["id"]},
                        "source": {
                            "type": "manual",
                            "handle_inputs": {
                                "input": {"type": "json", "data": {"name": f"v{n}", "delay": delay}}
                            },
                        },
                        "assertion": {
                            "target": {"output_handle_id": "output-json-0"},
                            "condition": {"kind": "exists"},
                        },
                    },
                    expect=201,
                )

        await asyncio.gather(*(one(n, delay_s) for n in range(tests)))
        return str(workflow["id"])

    async def start_run(self, workflow_id: str) -> str:
        run = await self.call(
            "POST", "/v1/workflows/tests/runs", {"workflow_id": workflow_id}, expect=202
        )
        return str(run["id"])

    async def completed(self, run_id: str, within_s: float) -> dict[str, Any]:
        """The run once completed; a 503 meanwhile (the database restarting) is retried."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            try:
                async with self.http.get(
                    f"{self.base_url}/v1/workflows/tests/runs/{run_id}", headers=AUTH
                ) as answer:
                    if answer.status == 200:
                        run: dict[str, Any] = await answer.json()
                        if run["lifecycle"]["status"] == "completed":
                            return run
                    else:
                        assert 503 == answer.status, await answer.text()
            except aiohttp.ClientConnectionError:
                pass  # a server being restarted by the test
            await asyncio.sleep(0.2)
        pytest.fail(f"the run did not complete within {within_s} s")


async def _outcomes(conn: asyncpg.Connection | asyncpg.Pool, run_id: str) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND type = ANY ($2::text[])",
        f"run-{run_id}",
        OUTCOME_TYPES,
    )
    return count


async def _assert_nothing_lost(
    conn: asyncpg.Connection, run: dict[str, Any], tests: int, database_url: str
) -> None:
    """Counts add up, each test has exactly one outcome, the read model is the fold."""
    lifecycle, outcome = run["counts"]["lifecycle_counts"], run["counts"]["outcome"]
    assert tests == run["total_tests"]
    assert tests == sum(lifecycle.values())
    assert lifecycle["completed"] == sum(outcome.values())
    assert tests == lifecycle["completed"] + lifecycle["error"]
    rows = await conn.fetch(
        """
        SELECT data->>'result_id' AS result_id, count(*) AS n FROM events
         WHERE stream_id = $1 AND type = ANY ($2::text[])
         GROUP BY 1
        """,
        f"run-{run['id']}",
        OUTCOME_TYPES,
    )
    assert tests == len(rows), "every test has an outcome"
    assert {1} == {row["n"] for row in rows}, "no test has two outcomes"
    verified = await asyncio.to_thread(
        run_script, "replay-run", run["id"], "--verify", database_url=database_url
    )
    assert 0 == verified.returncode, verified.stderr


# -- a private PostgreSQL ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_pg() -> Iterator[pg.PrivatePostgres]:
    """A PostgreSQL server of this module's own, to stop and restart."""
    folder = pg.binaries()
    if folder is None:
        pytest.skip("no PostgreSQL binaries: neither /usr/lib/postgresql/*/bin nor pgserver's")
    server = pg.PrivatePostgres(folder)
    yield server
    server.destroy()


@pytest.fixture
async def private_url(private_pg: pg.PrivatePostgres) -> AsyncIterator[str]:
    """A fresh, migrated database on the private server; dropped afterwards."""
    if not private_pg.running():
        await asyncio.to_thread(private_pg.start)
    name = f"faults_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(private_pg.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = private_pg.url(name)
    await db.migrate(url)
    yield url
    if not private_pg.running():
        await asyncio.to_thread(private_pg.start)
    admin = await asyncpg.connect(private_pg.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


TESTS_ACROSS_RESTART = 1000


async def test_a_postgresql_restart_mid_run_loses_nothing(
    private_pg: pg.PrivatePostgres, private_url: str, tmp_path: Path
) -> None:
    """1,000 tests; PostgreSQL restarts mid-run; the server and a worker carry on by themselves."""
    server_log, worker_log = tmp_path / "server.log", tmp_path / "worker.log"
    server, base_url = await _serve(private_url, server_log)
    worker = _spawn("worker", private_url, worker_log)
    try:
        async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
            api = Api(http, base_url)
            workflow_id = await api.suite(TESTS_ACROSS_RESTART, delay_s=0.1)
            run_id = await api.start_run(workflow_id)

            # Restart once a fair share of the tests are recorded, most still to come.
            watcher = await asyncpg.connect(private_url)
            try:
                deadline = time.monotonic() + 60
                while await _outcomes(watcher, run_id) < TESTS_ACROSS_RESTART // 5:
                    assert time.monotonic() < deadline, "the run did not get going"
                    await asyncio.sleep(0.02)
            finally:
                await watcher.close()
            # Clients keep asking throughout: each gets an answer, 200 or 503, never a 500.
            statuses: list[int] = []
            asking = asyncio.Event()
            asking.set()

            async def ask() -> None:
                while asking.is_set():
                    async with http.get(
                        f"{base_url}/v1/workflows/tests/runs/{run_id}", headers=AUTH
                    ) as answer:
                        statuses.append(answer.status)
                    await asyncio.sleep(0.01)

            client = asyncio.create_task(ask())
            before = datetime.now(UTC)
            await asyncio.to_thread(private_pg.restart)
            after = datetime.now(UTC)
            await asyncio.sleep(2)
            asking.clear()
            await client
            assert set(statuses) <= {200, 503}, sorted(set(statuses))
            assert 200 == statuses[-1], "answering again"

            run = await api.completed(run_id, within_s=120)
            # The server answers again (the pool reconnected), and says it is ready.
            async with http.get(f"{base_url}/readyz") as ready:
                assert 200 == ready.status
            assert server.poll() is None, "the server never exited"
            assert worker.poll() is None, "the worker never exited"

        conn = await asyncpg.connect(private_url)
        try:
            split = await conn.fetchrow(
                """
                SELECT count(*) FILTER (WHERE recorded_at < $2) AS before,
                       count(*) FILTER (WHERE recorded_at > $3) AS after
                  FROM events WHERE stream_id = $1 AND type = ANY ($4::text[])
                """,
                f"run-{run_id}",
                before,
                after,
                OUTCOME_TYPES,
            )
            assert split["before"] > 0, "tests finished before the restart"
            assert split["after"] > 0, "tests finished after the restart: it was mid-run"
            await _assert_nothing_lost(conn, run, TESTS_ACROSS_RESTART, private_url)
            assert 0 == run["counts"]["lifecycle_counts"]["error"], "a restart costs no test"

            # The projection leader reconnected too: the async projections catch up.
            deadline = time.monotonic() + 30
            while True:
                lag = await conn.fetchval(
                    """
                    SELECT max((SELECT count(*) FROM events e
                                 WHERE (e.transaction_id, e.global_position)
                                     > (c.transaction_id, c.global_position)))
                      FROM projection_checkpoints c
                    """
                )
                if lag == 0:
                    break
                assert time.monotonic() < deadline, f"the async projections are {lag} behind"
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
    finally:
        codes = [await _terminate(server), await _terminate(worker)]
    assert [0, 0] == codes, _events(server_log)[-3000:] + _events(worker_log)[-3000:]
    logs = _events(server_log) + _events(worker_log)
    # They noticed, said so, and came back: the wake-up connections listen again.
    assert "runner_listen_lost" in logs
    assert "runner_listening_again" in logs


async def test_with_postgresql_stopped_requests_answer_503_then_recover(
    private_pg: pg.PrivatePostgres, private_url: str, tmp_path: Path
) -> None:
    """No hang and no 500 while the database is down; the same process serves once it is back."""
    log = tmp_path / "server.log"
    server, base_url = await _serve(private_url, log)
    try:
        async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
            api = Api(http, base_url)
            workflow = await api.call("POST", "/v1/workflows", {"name": "w"}, expect=201)
            await asyncio.to_thread(private_pg.stop)
            try:
                for method, path, body in (
                    ("GET", f"/v1/workflows/{workflow['id']}", None),
                    ("POST", "/v1/workflows", {"name": "x"}),
                    ("GET", "/readyz", None),
                ):
                    started = time.monotonic()
                    async with http.request(
                        method, base_url + path, json=body, headers=AUTH
                    ) as answer:
                        payload = await answer.json()
                    elapsed = time.monotonic() - started
                    assert 503 == answer.status, (path, payload)
                    assert answer.headers["Retry-After"] == str(availability.RETRY_AFTER_S)
                    assert elapsed < 3, f"{path} took {elapsed:.1f} s"
                    if path != "/readyz":
                        assert "service_unavailable" == payload["detail"]["code"]
            finally:
                await asyncio.to_thread(private_pg.start)

            deadline = time.monotonic() + 15
            while True:
                async with http.get(
                    f"{base_url}/v1/workflows/{workflow['id']}", headers=AUTH
                ) as answer:
                    if answer.status == 200:
                        break
                    assert 503 == answer.status
                assert time.monotonic() < deadline, "the server did not recover"
                await asyncio.sleep(0.2)
            async with http.get(f"{base_url}/readyz") as ready:
                assert 200 == ready.status
            assert server.poll() is None
    finally:
        code = await _terminate(server)
    assert 0 == code, _events(log)[-3000:]


async def test_the_feed_listens_again_after_postgresql_restarts(
    private_pg: pg.PrivatePostgres, private_url: str
) -> None:
    """The hub's LISTEN connection dies with the restart; a new one wakes the same subscriber."""
    pool = await db.create_pool(private_url, min_size=1, max_size=3, acquire_timeout_s=2)
    hub = FeedHub()

    async def woken(wake: asyncio.Event, within_s: float) -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            wake.clear()
            try:
                notifier = await asyncpg.connect(private_url)
            except (OSError, asyncpg.PostgresError):
                await asyncio.sleep(0.1)
                continue
            try:
                await notifier.execute("SELECT pg_notify('events', 'run-x')")
            finally:
                await notifier.close()
            try:
                await asyncio.wait_for(wake.wait(), timeout=0.3)
            except TimeoutError:
                continue
            return True
        return False

    try:
        async with hub.subscription(pool, "run-x") as wake:
            assert await woken(wake, 5), "a NOTIFY wakes the subscriber"
            await asyncio.to_thread(private_pg.restart)
            assert await woken(wake, 10), "after the restart, a NOTIFY wakes it again"
    finally:
        await hub.close()
        await pool.close()


def _missing(expected: set[str], logs: list[dict[str, Any]]) -> str:
    """What a recovery lacks, and the last log entries of the loops it concerns (a
    string: pytest would shorten any other message)."""
    missing = expected - {entry["event"] for entry in logs}
    prefixes = tuple({event.split("_")[0] + "_" for event in missing})
    said = [e for e in logs if e["event"].startswith(prefixes)][-12:]
    return f"missing {sorted(missing)}; their loops said {said}"


async def test_while_postgresql_is_down_the_loops_back_off_and_never_exit(
    private_pg: pg.PrivatePostgres, private_url: str
) -> None:
    """Runner, projection leader, feed hub: each failure logged, longer waits, back when it is."""
    pool = await db.create_pool(private_url, min_size=1, max_size=4, acquire_timeout_s=1)
    stop = asyncio.Event()
    runner = Runner(pool, Config(test_timeout_s=2, lease_margin_s=1), dsn=private_url)
    hub = FeedHub()
    down_s = 4.0
    with capture_logs() as logs:
        loops = [
            asyncio.create_task(runner.run(stop)),
            asyncio.create_task(
                follow(
                    pool,
                    ASYNC_PROJECTIONS,
                    stop,
                    connect=lambda: asyncpg.connect(private_url, timeout=2),
                )
            ),
        ]
        try:
            async with hub.subscription(pool, "run-x"):
                await asyncio.sleep(0.5)
                await asyncio.to_thread(private_pg.stop)
                await asyncio.sleep(down_s)
                while_down = [entry["event"] for entry in logs]
                assert not any(loop.done() for loop in loops), "no loop exits"
                await asyncio.to_thread(private_pg.start)

                expected = {
                    "runner_claim_recovered",
                    "runner_listening_again",
                    "feed_listening_again",
                }
                deadline = time.monotonic() + 15
                while not expected <= {entry["event"] for entry in logs}:
                    assert time.monotonic() < deadline, _missing(expected, logs)
                    await asyncio.sleep(0.1)
                deadline = time.monotonic() + 15
                while [e["event"] for e in logs].count("projection_leader_elected") < 2:
                    assert time.monotonic() < deadline, "the projection leader came back"
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*loops), 15)
            await hub.close()
            await pool.close()
    # Logged, and retried with growing waits (0.25, 0.5, 1, 2 s ...): a few tries
    # in the outage, not one every poll (16 at 0.25 s), and never a busy loop.
    for event in ("runner_claim_failed", "runner_listen_failed", "feed_listen_failed"):
        assert 2 <= while_down.count(event) <= 8, (event, while_down.count(event))
    assert 1 <= while_down.count("projection_leader_connect_failed") <= 4


# -- the shared PostgreSQL: a pool exhausted, a statement too slow -----------------------------


async def test_an_exhausted_pool_answers_503_with_retry_after_within_the_bound(
    database_url: str,
) -> None:
    """The test holds the pool's only connection: requests answer 503 quickly, not hang."""
    pool = await db.create_pool(database_url, min_size=1, max_size=1, acquire_timeout_s=0.5)
    try:
        await keys.bootstrap(pool, API_KEY)
        async with TestClient(TestServer(create_app(pool, Config()))) as http:
            held = await pool.acquire()
            try:
                for path, headers in (
                    ("/v1/workflows", {"Authorization": f"Bearer {API_KEY}"}),
                    ("/readyz", {}),
                ):
                    started = time.monotonic()
                    answer = await asyncio.wait_for(http.get(path, headers=headers), 10)
                    elapsed = time.monotonic() - started
                    assert 503 == answer.status, await answer.text()
                    assert str(availability.RETRY_AFTER_S) == answer.headers["Retry-After"]
                    assert elapsed < 3, f"{path} answered after {elapsed:.1f} s"
                body = await (
                    await http.get("/v1/workflows", headers={"Authorization": f"Bearer {API_KEY}"})
                ).json()
                assert "service_unavailable" == body["detail"]["code"]
            finally:
                await pool.release(held)
            answer = await http.get("/v1/workflows", headers={"Authorization": f"Bearer {API_KEY}"})
            assert 200 == answer.status
    finally:
        await pool.close()


async def test_a_statement_past_the_timeout_answers_503(database_url: str) -> None:
    """statement_timeout is set on the service's connections, and its cancel becomes a 503."""
    pool = await db.create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=300)
    admin = await db.create_pool(database_url, min_size=1, max_size=1)  # as the scripts make it
    locker = await asyncpg.connect(database_url)
    try:
        assert "300ms" == await pool.fetchval("SHOW statement_timeout")
        assert "0" == await admin.fetchval("SHOW statement_timeout"), "admin work is never cut"
        with pytest.raises(asyncpg.exceptions.QueryCanceledError) as cancelled:
            await pool.fetchval("SELECT pg_sleep(2)")
        assert availability.unavailable(cancelled.value)

        await keys.bootstrap(pool, API_KEY)
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with TestClient(TestServer(create_app(pool, Config()))) as http:
            assert 200 == (await http.get("/v1/workflows", headers=auth)).status
            # A database too slow to answer: the query waits on a lock past the timeout.
            async with locker.transaction():
                await locker.execute("LOCK TABLE workflows IN ACCESS EXCLUSIVE MODE")
                started = time.monotonic()
                answer = await asyncio.wait_for(http.get("/v1/workflows", headers=auth), 10)
                elapsed = time.monotonic() - started
                body = await answer.json()
            assert 503 == answer.status, body
            assert "service_unavailable" == body["detail"]["code"]
            assert "Retry-After" in answer.headers
            assert elapsed < 2, f"answered after {elapsed:.1f} s"
            assert 200 == (await http.get("/v1/workflows", headers=auth)).status
    finally:
        await locker.close()
        await admin.close()
        await pool.close()


# -- the server killed, or asked to stop -------------------------------------------------------


async def test_a_server_sigkilled_mid_run_and_started_again_completes_the_run(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """The killed server's tests run again after their leases; none gets two outcomes."""
    tests = 300
    log = tmp_path / "server.log"
    server, base_url = await _serve(database_url, log)
    try:
        async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
            api = Api(http, base_url)
            workflow_id = await api.suite(tests, delay_s=0.05)
            run_id = await api.start_run(workflow_id)
            deadline = time.monotonic() + 60
            while await _outcomes(pool, run_id) < tests // 5:
                assert time.monotonic() < deadline, "the run did not get going"
                await asyncio.sleep(0.01)
            server.send_signal(signal.SIGKILL)
            await asyncio.to_thread(server.wait, 10)
            assert await _outcomes(pool, run_id) < tests, "killed mid-run"

            server, base_url = await _serve(database_url, log)
            run = await Api(http, base_url).completed(run_id, within_s=90)
    finally:
        code = await _terminate(server)
    assert 0 == code
    async with pool.acquire() as conn:
        await _assert_nothing_lost(conn, run, tests, database_url)
        again = await conn.fetchval(
            "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'test.started'"
            " AND (data->>'attempt')::int > 1",
            f"run-{run_id}",
        )
    assert again > 0, "the tests the killed server held ran again"


async def test_sigterm_finishes_requests_and_tests_and_hands_back_the_rest(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """SIGTERM: no new connection; a slow request still gets its 200; a short test finishes;
    a long one is handed back, claimable at once; exit 0 within the grace and a bit."""
    grace_s = 3.0
    log = tmp_path / "server.log"
    server, base_url = await _serve(
        database_url,
        log,
        SHUTDOWN_GRACE_S=str(grace_s),
        TEST_TIMEOUT_S="60",
        LEASE_MARGIN_S="30",
    )
    locker = await asyncpg.connect(database_url)
    try:
        async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
            api = Api(http, base_url)
            workflow = await api.call("POST", "/v1/workflows", {"name": "w"}, expect=201)
            block = await api.call(
                "POST",
                "/v1/workflows/blocks",
                {
                    "workflow_id": workflow["id"],
                    "type": "function",
                    "config": {"entrypoint": "tests.run_functions:sleepy"},
                },
                expect=201,
            )
            test_ids = {}
            for delay in (2, 30):
                saved = await api.call(
                    "POST",
                    "/v1/workflows/tests",
                    {
                        "workflow_id": workflow["id"],
                        "target": {"type": "block", "block_id": block["id"]},
                        "source": {
                            "type": "manual",
                            "handle_inputs": {"input": {"type": "json", "data": {"delay": delay}}},
                        },
                        "assertion": {
                            "target": {"output_handle_id": "output-json-0"},
                            "condition": {"kind": "exists"},
                        },
                    },
                    expect=201,
                )
                test_ids[delay] = saved["id"]
            run_id = await api.start_run(workflow["id"])
            stream = f"run-{run_id}"
            deadline = time.monotonic() + 20
            while await pool.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'test.started'",
                stream,
            ) < 2:
                assert time.monotonic() < deadline, "the tests did not start"
                await asyncio.sleep(0.05)

            # A request in flight: its UPDATE waits for a row lock the test holds.
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT 1 FROM workflows WHERE id = $1 FOR UPDATE", workflow["id"])
            rename = asyncio.create_task(
                api.call("PATCH", f"/v1/workflows/{workflow['id']}", {"name": "renamed"})
            )
            deadline = time.monotonic() + 10
            while not await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND application_name = 'testrun-service'"
            ):
                assert time.monotonic() < deadline, "the request did not reach the lock"
                await asyncio.sleep(0.02)

            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.5)
            with pytest.raises(aiohttp.ClientConnectionError):
                async with http.get(f"{base_url}/healthz"):
                    pass
            assert server.poll() is None, "still finishing its work"
            await lock.rollback()
            renamed = await rename
            assert "renamed" == renamed["name"], "the request in flight got its answer"
            code = await asyncio.to_thread(server.wait, grace_s + 5)
            stopped_after = time.monotonic() - signalled
    finally:
        await locker.close()
        await _terminate(server)
    assert 0 == code, _events(log)[-3000:]
    assert stopped_after < grace_s + 5

    outcomes = await pool.fetch(
        "SELECT type, data->>'test_id' AS test_id FROM events"
        " WHERE stream_id = $1 AND type = ANY ($2::text[])",
        stream,
        OUTCOME_TYPES,
    )
    assert [("test.passed", test_ids[2])] == [(r["type"], r["test_id"]) for r in outcomes]
    handed_back = await pool.fetchrow(
        "SELECT lease_owner, available_at <= now() AS claimable FROM test_queue"
        " WHERE run_id = $1",
        run_id,
    )
    assert handed_back is not None, "the long test is still queued"
    assert handed_back["lease_owner"] is None
    assert handed_back["claimable"], "another runner may take it at once, not after the lease"


async def test_a_sigtermed_worker_hands_its_test_to_another_at_once(
    database_url: str, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """A worker stopped mid-test exits 0 in time; a second worker runs the test next, not
    after the lease (here 90 s) runs out."""
    env = {"SHUTDOWN_GRACE_S": "1", "TEST_TIMEOUT_S": "60", "LEASE_MARGIN_S": "30"}
    log = tmp_path / "server.log"
    server, base_url = await _serve(database_url, log, RUNNER_ENABLED="false", **env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        async with aiohttp.ClientSession(timeout=_CLIENT_TIMEOUT) as http:
            api = Api(http, base_url)
            run_id = await api.start_run(await api.suite(1, delay_s=30))
        stream = f"run-{run_id}"

        async def started(attempt: int, within_s: float) -> None:
            deadline = time.monotonic() + within_s
            while not await pool.fetchval(
                "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'test.started'"
                " AND (data->>'attempt')::int = $2",
                stream,
                attempt,
            ):
                assert time.monotonic() < deadline, f"attempt {attempt} did not start"
                await asyncio.sleep(0.05)

        workers.append(_spawn("worker", database_url, tmp_path / "worker1.log", **env))
        await started(1, within_s=30)
        signalled = time.monotonic()
        code = await _terminate(workers[0], within_s=10)
        assert 0 == code, _events(tmp_path / "worker1.log")[-3000:]
        assert time.monotonic() - signalled < 1 + 5, "the grace and a bit"

        workers.append(_spawn("worker", database_url, tmp_path / "worker2.log", **env))
        await started(2, within_s=15)
        assert 0 == await _outcomes(pool, run_id), "no outcome for the abandoned attempt"
    finally:
        codes = [await _terminate(process) for process in [*workers, server]]
    assert [0] * len(codes) == codes
