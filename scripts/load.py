"""The load test behind scripts/load: clients creating runs and polling them, against one server.

Each client loops for `--duration` seconds: it creates a run of the workflow's
`--tests` no-op `function` tests (POST), polls the run (GET) every
`--poll-interval` seconds until it is terminal, and starts again. When the
duration is over, the runs still going are polled until they end (at most
`--drain-timeout` seconds). Every request's latency and status is recorded;
the summary is a markdown table (or JSON with `--json`).

The exit status is 1 when any request failed (a non-2xx answer or an
exception), any run did not complete with every test passed, or the p99 of
GET reached `--max-p99-ms`; 2 on a setup failure.

By default the script starts its own `python -m service serve` on a free port,
on a fresh database it creates on `DATABASE_URL`'s (or `TEST_DATABASE_URL`'s)
PostgreSQL server, or 127.0.0.1:5432, or the embedded PostgreSQL, and drops it
at the end. `--url` and `--api-key` target a running server instead (its
`FUNCTION_MODULES` must allow `--entrypoint`).

The script is the load generator (one process, one event loop, like `--clients`
SDK users sharing a machine); the server is a separate process. Everything is
bounded: a hard deadline cancels the load, and the server is stopped by its pid
(SIGTERM, then SIGKILL) on every way out, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import aiohttp
import asyncpg
import scratch

ROOT = Path(__file__).resolve().parents[1]
RUNS = "/v1/workflows/tests/runs"
TERMINAL = ("completed", "error", "cancelled")
SETUP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 10.0
T = TypeVar("T")


@dataclass
class Recorder:
    """Every request's latency (seconds) by kind, the failures, and the runs' fates."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {"GET": [], "POST": []})
    requests: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    created: set[str] = field(default_factory=set)
    completed: set[str] = field(default_factory=set)
    not_passed: dict[str, Any] = field(default_factory=dict)
    last_completion: float = 0.0
    floor: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(what)


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `values` (NaN when there are none)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Load:
    """The clients, sharing one HTTP connection pool and one recorder."""

    def __init__(self, session: aiohttp.ClientSession, base: str, args: argparse.Namespace):
        self.session = session
        self.base = base.rstrip("/")
        self.args = args
        self.record = Recorder()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One timed request; the JSON answer, or None when it failed (recorded as an error)."""
        started = time.perf_counter()
        self.record.requests += 1
        try:
            async with self.session.request(method, self.base + path, json=body) as response:
                payload = await response.read()
                elapsed = time.perf_counter() - started
                self.record.latencies[method].append(elapsed)
                if not 200 <= response.status < 300:
                    self.record.error(f"{method} {path}: {response.status} {payload[:200]!r}")
                    return None
                return json.loads(payload)
        except (aiohttp.ClientError, TimeoutError, ValueError) as error:
            self.record.latencies[method].append(time.perf_counter() - started)
            self.record.error(f"{method} {path}: {type(error).__name__}: {error}")
            return None

    async def setup(self) -> str:
        """A workflow with one no-op `function` block and `--tests` saved tests; its id."""
        workflow = await self.request("POST", "/v1/workflows", {"name": "load"})
        if workflow is None:
            raise SetupError(self.record.error_samples)
        block = await self.request(
            "POST",
            "/v1/workflows/blocks",
            {
                "workflow_id": workflow["id"],
                "type": "function",
                "config": {"entrypoint": self.args.entrypoint},
            },
        )
        if block is None:
            raise SetupError(self.record.error_samples)
        test = {
            "workflow_id": workflow["id"],
            "target": {"type": "block", "block_id": block["id"]},
            "source": {
                "type": "manual",
                "handle_inputs": {"input": {"type": "json", "data": 1}},
            },
            "assertion": {
                "target": {"output_handle_id": "output-json-0"},
                "condition": {"kind": "equals", "expected": True},
            },
        }
        for _ in range(self.args.tests):
            if await self.request("POST", "/v1/workflows/tests", test) is None:
                raise SetupError(self.record.error_samples)
        # The setup requests are not part of the measurement.
        self.record = Recorder()
        workflow_id: str = workflow["id"]
        return workflow_id

    async def client(self, workflow_id: str, stop_at: float, drain_until: float) -> None:
        """Create a run, poll it until it ends, again, until `stop_at`."""
        interval = self.args.poll_interval
        while time.monotonic() < stop_at:
            run = await self.request("POST", RUNS, {"workflow_id": workflow_id})
            if run is None:
                await asyncio.sleep(interval)
                continue
            run_id = run["id"]
            self.record.created.add(run_id)
            while time.monotonic() < drain_until:
                await asyncio.sleep(interval)
                state = await self.request("GET", f"{RUNS}/{run_id}")
                if state is None or state["lifecycle"]["status"] not in TERMINAL:
                    continue
                self.record.last_completion = time.monotonic()
                passed = state["counts"]["passed"]
                if state["lifecycle"]["status"] == "completed" and passed == self.args.tests:
                    self.record.completed.add(run_id)
                else:
                    self.record.not_passed[run_id] = {
                        "lifecycle": state["lifecycle"],
                        "counts": state["counts"],
                    }
                break

    async def server_histogram(self) -> dict[float, float]:
        """The server's own GET-run latency histogram (cumulative count by bucket bound)."""
        buckets: dict[float, float] = {}
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self.session.get(f"{self.base}/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                if line.startswith(_SERVER_BUCKET) and all(x in line for x in _SERVER_LABELS):
                    bound = line.split('le="', 1)[1].split('"', 1)[0]
                    buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
        return buckets

    async def run(self) -> dict[str, Any]:
        """Set up, load for `--duration`, drain; the summary."""
        workflow_id = await self.setup()
        before = await self.server_histogram()
        started = time.monotonic()
        stop_at = started + self.args.duration
        drain_until = stop_at + self.args.drain_timeout
        probes = [asyncio.create_task(self.healthz()), asyncio.create_task(self.loop_lag())]
        try:
            await asyncio.gather(
                *(self.client(workflow_id, stop_at, drain_until) for _ in range(self.args.clients))
            )
        finally:
            for probe in probes:
                probe.cancel()
        ended = time.monotonic()
        after = await self.server_histogram()
        summary = self.summary(started, ended)
        summary["server_get"] = _server_figures(before, after)
        return summary

    async def healthz(self) -> None:
        """GET /healthz every 0.1 s: the floor under every latency (no database, no work).

        When its p99 is near the GETs' p99, what limits them is CPU scheduling and
        event-loop lag (the machine), not the run query.
        """
        while True:
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self.session.get(f"{self.base}/healthz") as response:
                    await response.read()
                    self.record.floor.append(time.perf_counter() - started)

    async def loop_lag(self) -> None:
        """How late this process's event loop wakes a 10 ms sleep (the load generator's share)."""
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.01)
            self.record.lag.append(max(0.0, time.perf_counter() - started - 0.01))

    def summary(self, started: float, ended: float) -> dict[str, Any]:
        """The figures, and why the run failed (empty when it held)."""
        record, args = self.record, self.args
        gets, posts = record.latencies["GET"], record.latencies["POST"]

        def ms(values: list[float], fraction: float) -> float | None:
            value = percentile(values, fraction)
            return None if math.isnan(value) else round(value * 1000, 2)

        completed_tests = len(record.completed) * args.tests
        busy = (record.last_completion or ended) - started
        figures: dict[str, Any] = {
            "clients": args.clients,
            "duration_s": args.duration,
            "tests_per_run": args.tests,
            "poll_interval_s": args.poll_interval,
            "workers": args.workers,
            "elapsed_s": round(ended - started, 2),
            "runs_created": len(record.created),
            "runs_completed": len(record.completed),
            "runs_incomplete": len(record.created) - len(record.completed),
            "requests": record.requests,
            "errors": record.errors,
            "error_samples": record.error_samples,
            "runs_not_passed": dict(list(record.not_passed.items())[:10]),
            "get": {
                "count": len(gets),
                "p50_ms": ms(gets, 0.50),
                "p95_ms": ms(gets, 0.95),
                "p99_ms": ms(gets, 0.99),
                "max_ms": ms(gets, 1.0),
            },
            "post": {
                "count": len(posts),
                "p50_ms": ms(posts, 0.50),
                "p99_ms": ms(posts, 0.99),
                "max_ms": ms(posts, 1.0),
            },
            "requests_per_s": round(record.requests / max(ended - started, 1e-9), 1),
            "tests_per_s": round(completed_tests / max(busy, 1e-9), 1),
            "max_p99_ms": args.max_p99_ms,
            "healthz": {
                "count": len(record.floor),
                "p50_ms": ms(record.floor, 0.5),
                "p99_ms": ms(record.floor, 0.99),
            },
            "client_loop_lag": {"p99_ms": ms(record.lag, 0.99), "max_ms": ms(record.lag, 1.0)},
        }
        failures = []
        if record.errors:
            failures.append(f"{record.errors} requests failed")
        if figures["runs_incomplete"]:
            failures.append(f"{figures['runs_incomplete']} runs did not complete")
        if not record.created:
            failures.append("no run was created")
        p99 = figures["get"]["p99_ms"]
        if p99 is None or p99 >= args.max_p99_ms:
            failures.append(f"GET p99 {p99} ms is not under {args.max_p99_ms} ms")
        figures["failures"] = failures
        figures["ok"] = not failures
        return figures


_SERVER_BUCKET = "http_request_duration_seconds_bucket{"
_SERVER_LABELS = ('method="GET"', 'route="/v1/workflows/tests/runs/{run_id}"')


def _server_figures(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """What the server measured itself (no client overhead): GETs, share within 50 ms, p99 bucket.

    The p99 is the upper bound of the histogram bucket that holds it.
    """
    if not after:
        return {"count": None, "within_50ms": None, "p99_at_most_ms": None}
    delta = {bound: count - before.get(bound, 0.0) for bound, count in sorted(after.items())}
    total = delta.get(math.inf, 0.0)
    p99 = next((bound for bound, count in delta.items() if total and count >= 0.99 * total), None)
    return {
        "count": int(total),
        "within_50ms": round(delta.get(0.05, 0.0) / total, 4) if total else None,
        "p99_at_most_ms": None if p99 is None or math.isinf(p99) else round(p99 * 1000, 1),
    }


class SetupError(RuntimeError):
    """The workflow, block or tests could not be created."""


class Interrupted(BaseException):  # a signal, like KeyboardInterrupt
    """SIGTERM or SIGHUP: stop, clean up, exit."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signum)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop when it is there (less client overhead in the measured latencies)."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def _load(
    base: str,
    key: str,
    args: argparse.Namespace,
    server: subprocess.Popen[bytes] | None = None,
) -> dict[str, Any]:
    """The load against `base`, cancelled at the hard deadline."""
    # One connection per client, kept alive, the way each SDK client keeps its own.
    connector = aiohttp.TCPConnector(limit=args.clients + 4)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    headers = {"Authorization": f"Bearer {key}"}
    deadline = SETUP_TIMEOUT_S + args.duration + args.drain_timeout + REQUEST_TIMEOUT_S
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        await _wait_healthy(session, base, server)
        async with asyncio.timeout(deadline):
            return await Load(session, base, args).run()


async def _wait_healthy(
    session: aiohttp.ClientSession, base: str, server: subprocess.Popen[bytes] | None
) -> None:
    deadline = time.monotonic() + SETUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            msg = f"the server exited with {server.returncode}"
            raise SetupError(msg)
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(f"{base.rstrip('/')}/healthz") as response:
                if response.status == 200:
                    return
        await asyncio.sleep(0.1)
    msg = f"{base} did not answer /healthz within {SETUP_TIMEOUT_S:.0f} s"
    raise SetupError(msg)


def _die_with_parent() -> None:
    """In the child: SIGTERM when this script dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def _server(
    dsn: str, key: str, log: Path, workers: int
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m service serve` on a free port (and `workers` workers, which then run every
    test); yields its base URL; stops each process by its pid."""
    port = scratch.free_port()
    env = {
        **os.environ,
        "DATABASE_URL": dsn,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BOOTSTRAP_API_KEY": key,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "warning"),
        "FUNCTION_MODULES": "tests.run_functions",
        "PYTHONPATH": str(ROOT),
    }
    if workers:
        env["RUNNER_ENABLED"] = "false"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("wb") as output:
            for command in ["serve"] + ["worker"] * workers:
                # Its own session: Ctrl-C reaches only this script, which stops it in order.
                processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "service", command],
                        env=env,
                        cwd=ROOT,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
                    )
                )
        yield f"http://127.0.0.1:{port}", processes[0]
    finally:
        for process in reversed(processes):
            _stop(process)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def _own_server(args: argparse.Namespace) -> dict[str, Any]:
    """A fresh database and a server on it for the load; both gone afterwards."""
    admin = asyncio.run(scratch.admin_dsn("load-postgres"))
    name = f"load_{uuid.uuid4().hex[:10]}"
    key = "rtk_load_" + uuid.uuid4().hex
    try:
        dsn = asyncio.run(scratch.create_database(admin, name))
        with tempfile.TemporaryDirectory(prefix="load-") as folder:
            log = Path(folder) / "server.log"
            try:
                with _server(dsn, key, log, args.workers) as (base, server):
                    summary = _run(_load(base, key, args, server))
            except BaseException:
                tail = log.read_text(errors="replace").splitlines()[-20:]
                if tail:
                    print("the server's last log lines:", *tail, sep="\n", file=sys.stderr)
                raise
    finally:
        asyncio.run(scratch.drop_database(admin, name))
    summary["database"] = name
    return summary


def _markdown(summary: dict[str, Any]) -> str:
    get, post, server = summary["get"], summary["post"], summary["server_get"]
    rows = [
        ("clients x duration", f"{summary['clients']} x {summary['duration_s']:g} s"),
        ("tests per run", summary["tests_per_run"]),
        ("poll interval", f"{summary['poll_interval_s']:g} s"),
        ("tests run by", f"{summary['workers']} workers" if summary["workers"] else "serve"),
        ("runs created", summary["runs_created"]),
        ("runs completed (every test passed)", summary["runs_completed"]),
        ("requests", f"{summary['requests']} ({summary['requests_per_s']:,.0f}/s)"),
        ("errors (non-2xx or exceptions)", summary["errors"]),
        (
            "GET run p50 / p95 / p99 / max (ms)",
            f"{get['p50_ms']} / {get['p95_ms']} / {get['p99_ms']} / {get['max_ms']}"
            f" (goal p99 < {summary['max_p99_ms']:g})",
        ),
        (
            "POST run p50 / p99 / max (ms)",
            f"{post['p50_ms']} / {post['p99_ms']} / {post['max_ms']}",
        ),
        (
            "server-side GET run: count, share within 50 ms, p99 at most (ms)",
            f"{server['count']}, {server['within_50ms']}, {server['p99_at_most_ms']}",
        ),
        (
            "floor: GET /healthz p50 / p99 (ms); load generator loop lag p99 / max (ms)",
            f"{summary['healthz']['p50_ms']} / {summary['healthz']['p99_ms']};"
            f" {summary['client_loop_lag']['p99_ms']} / {summary['client_loop_lag']['max_ms']}",
        ),
        ("tests/s (completed runs)", f"{summary['tests_per_s']:,.1f}"),
        ("verdict", "held" if summary["ok"] else "FAILED: " + "; ".join(summary["failures"])),
    ]
    lines = [
        f"\nload test, {summary['started_at']}, {os.cpu_count()} cores\n",
        "| figure | value |",
        "|---|---|",
        *(f"| {label} | {value} |" for label, value in rows),
    ]
    for sample in summary["error_samples"]:
        lines.append(f"\nerror: {sample}")
    for run_id, fate in summary["runs_not_passed"].items():
        lines.append(f"\nrun {run_id}: {json.dumps(fate)}")
    return "\n".join(lines)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/load", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (64)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--tests", type=int, default=20, help="tests per run (20)")
    parser.add_argument(
        "--poll-interval", type=float, default=0.1, help="seconds between GETs of a run (0.1)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=60.0,
        help="seconds the runs still going after the duration may take to end (60)",
    )
    parser.add_argument(
        "--max-p99-ms", type=float, default=50.0, help="fail when GET p99 reaches this (50)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="our own server only: run the tests in this many `worker` processes instead of"
        " inside `serve` (0: inside serve, the default deployment)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--url", help="a running server instead of our own (needs --api-key)")
    parser.add_argument("--api-key", help="the key for --url")
    parser.add_argument(
        "--entrypoint",
        default="tests.run_functions:noop",
        help="the function blocks' callable (tests.run_functions:noop)",
    )
    args = parser.parse_args()
    if bool(args.url) != bool(args.api_key):
        parser.error("--url and --api-key go together")
    if not (1 <= args.clients <= 1024):
        parser.error("--clients must be 1..1024")
    if not (0 < args.duration <= 3600) or not (0 < args.drain_timeout <= 600):
        parser.error("--duration must be in (0, 3600] and --drain-timeout in (0, 600]")
    if not (0 <= args.workers <= 8) or (args.workers and args.url):
        parser.error("--workers must be 0..8, and only without --url")
    if not (1 <= args.tests <= 1000) or args.poll_interval < 0:
        parser.error("--tests must be 1..1000 and --poll-interval at least 0")
    return args


def main() -> int:
    """Run the load; print the summary; 0 when it held, 1 when not, 2 when it could not run."""
    args = _arguments()
    from service.logging import configure  # noqa: PLC0415

    configure("console", "warning")  # stdout is for the summary only
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        summary = _run(_load(args.url, args.api_key, args)) if args.url else _own_server(args)
    except (SetupError, TimeoutError, OSError, asyncpg.PostgresError) as error:
        print(f"scripts/load: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Interrupted):
        print("scripts/load: interrupted; the server is stopped", file=sys.stderr)
        return 130
    summary["started_at"] = started_at
    print(json.dumps(summary, indent=2) if args.json else _markdown(summary))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
