"""`python -m service serve|worker|migrate|replay-run|rebuild-projections|...` (see main)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web

from projections.asynchronous import follow
from projections.rebuild import ASYNC_PROJECTIONS
from service import db
from service import logging as service_logging
from service.config import Config
from service.execution.runner import Runner
from service.http.app import create_app
from service.http.measure import METRICS
from service.ops import keys

log = structlog.get_logger("service")

T = TypeVar("T")

# Connecting gives up after this (PostgreSQL unreachable): the loops retry later.
_CONNECT_TIMEOUT_S = 10.0
# Closing the pool waits this long for connections still in use, then closes them.
_CLOSE_TIMEOUT_S = 5.0
# At exit, threads still running after this (a stuck sync function) are abandoned.
_THREADS_EXIT_WAIT_S = 1.0


def resolve_dsn(config: Config) -> str:
    """`DATABASE_URL`, or the embedded PostgreSQL in the data folder when it is unset."""
    if config.database_url:
        return config.database_url
    return db.start_embedded(config.data_dir.resolve() / "postgres")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _report_runner_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("runner_crashed", error=repr(task.exception()))


async def serve(config: Config) -> None:
    """Migrate, make sure a key exists, serve (and run tests) until SIGTERM or SIGINT."""
    threads = _own_threads()
    dsn = resolve_dsn(config)
    await db.migrate(dsn)
    pool = await _service_pool(dsn, config)
    try:
        key = await keys.bootstrap(pool, config.bootstrap_api_key)
        if key is not None:
            print(f"Created an organisation and its API key (shown once): {key}", flush=True)
        app = create_app(pool, config)
        # On stop, requests already being answered get the grace to finish.
        http = web.AppRunner(app, access_log=None, shutdown_timeout=config.shutdown_grace_s)
        await http.setup()
        site = web.TCPSite(http, config.host, config.port)
        await site.start()
        _settle_garbage_collector()
        log.info("serving", url=f"http://{config.host}:{config.port}")
        stop = _stop_on_signals()
        # The async projections (each saved test's latest run summaries).
        summaries = asyncio.create_task(_follow(pool, dsn, stop))
        tests = None
        if config.runner_enabled:
            runner = Runner(pool, config, dsn, metrics=app[METRICS])  # counted on /metrics
            tests = asyncio.create_task(runner.run(stop))
            tests.add_done_callback(_report_runner_exit)
        await stop.wait()
        log.info("shutting_down", grace_s=config.shutdown_grace_s)
        # At once: no new connection is accepted, the runner claims nothing more.
        # Within the grace, side by side: in-flight requests finish (then the
        # rest are cancelled), running tests finish (then the rest are handed
        # back to the queue for another runner).
        await http.cleanup()
        if tests is not None:
            await tests
        await summaries
    finally:
        await _close(pool)
    _exit_if_threads_linger(threads)


async def work(config: Config) -> None:
    """Run tests (no HTTP) until SIGTERM or SIGINT: one more runner on the same database.

    A worker also stands by to lead the async projections if the leader dies.
    """
    threads = _own_threads()
    dsn = resolve_dsn(config)
    await db.migrate(dsn)
    pool = await _service_pool(dsn, config)
    _settle_garbage_collector()
    try:
        stop = _stop_on_signals()
        summaries = asyncio.create_task(_follow(pool, dsn, stop))
        await Runner(pool, config, dsn).run(stop)
        stop.set()
        await summaries
    finally:
        await _close(pool)
    _exit_if_threads_linger(threads)


def _settle_garbage_collector() -> None:
    """Keep the cycle collector from pausing a busy server for tens of milliseconds.

    Once started, the objects made so far (modules, the app, the pool) live as
    long as the process: `gc.freeze` takes them out of every collection. The
    young generation is collected every 50,000 allocations instead of 700, so a
    runner recording thousands of outcomes a second no longer triggers frequent
    passes (the tail latency this saved is in BENCHMARKS.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def _service_pool(dsn: str, config: Config) -> asyncpg.Pool:
    """The pool of `serve` and `worker`: bounded waits for a connection and for a statement."""
    return await db.create_pool(
        dsn,
        min_size=config.db_pool_min,
        max_size=config.db_pool_max,
        acquire_timeout_s=config.db_acquire_timeout_s,
        statement_timeout_ms=config.db_statement_timeout_ms,
        timeout=_CONNECT_TIMEOUT_S,
    )


async def _close(pool: asyncpg.Pool) -> None:
    """Close the pool; a connection still held after a while is closed by force."""
    try:
        await asyncio.wait_for(pool.close(), timeout=_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("pool_close_timed_out", timeout_s=_CLOSE_TIMEOUT_S)
        pool.terminate()


def _own_threads() -> ThreadPoolExecutor:
    """The loop's default executor (sync block functions run there), so it can be shut down."""
    threads = ThreadPoolExecutor(thread_name_prefix="service")
    asyncio.get_running_loop().set_default_executor(threads)
    return threads


def _exit_if_threads_linger(threads: ThreadPoolExecutor) -> None:
    """Exit now if a thread is still busy: a sync block function that ignored its timeout.

    A thread cannot be stopped, and the interpreter waits for every one at
    exit, so one stuck function would hold the exit forever. Its test was
    already handed back to the queue; nothing else is left to do.
    """
    # Idle threads end at once; a busy one ends when its function returns.
    threads.shutdown(wait=False, cancel_futures=True)
    deadline = time.monotonic() + _THREADS_EXIT_WAIT_S
    while True:
        busy = [
            thread.name
            for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
        ]
        if not busy:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    log.warning("exiting_with_threads_running", threads=busy)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def _follow(pool: asyncpg.Pool, dsn: str, stop: asyncio.Event) -> None:
    """The async projections, led by one process of the deployment at a time."""
    await follow(
        pool,
        ASYNC_PROJECTIONS,
        stop,
        connect=lambda: asyncpg.connect(dsn, timeout=_CONNECT_TIMEOUT_S),
    )


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run the service's coroutine on uvloop when it is installed."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


def build_parser() -> argparse.ArgumentParser:
    """Every subcommand and its options."""
    parser = argparse.ArgumentParser(prog="python -m service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate and serve the API")
    commands.add_parser("worker", help="run tests from the queue (no HTTP)")
    commands.add_parser("migrate", help="apply pending migrations and exit")
    replay = commands.add_parser("replay-run", help="print a run's events and its state after each")
    replay.add_argument("run_id")
    replay.add_argument("--json", action="store_true", help="JSON lines for machines")
    replay.add_argument(
        "--verify", action="store_true", help="exit 1 when the stored read model differs"
    )
    repair = commands.add_parser(
        "repair-after-restore", help="renumber transaction ids after restoring a dump"
    )
    repair.add_argument(
        "--no-burn", action="store_true", help="fail instead of advancing a too-low xid counter"
    )
    export = commands.add_parser("export-events", help="every event as JSON lines, commit order")
    export.add_argument("--run", dest="run_id", help="only this run's events")
    export.add_argument("--organisation", dest="organisation_id", help="only its runs' events")
    export.add_argument("--since", help="recorded at or after this RFC 3339 time")
    export.add_argument("--until", help="recorded before this RFC 3339 time")
    keys_parser = commands.add_parser("keys", help="create, list or revoke API keys")
    keys_parser.add_argument("action", choices=["create", "list", "revoke"])
    keys_parser.add_argument("key_id", nargs="?", help="revoke: the key's id (key_...)")
    keys_parser.add_argument("--organisation", help="create: for this organisation id")
    keys_parser.add_argument("--new-organisation", help="create: for a new organisation so named")
    keys_parser.add_argument("--name", default="", help="create: a name to recognise the key by")
    follow_status = commands.add_parser("projections", help="the async projections")
    follow_status.add_argument("action", choices=["status"])
    demo = commands.add_parser(
        "demo", help="on a running server: a demo workflow, its saved tests, a run"
    )
    demo.add_argument("--url", help="the server (default: TESTRUN_URL, else HOST and PORT)")
    demo.add_argument("--api-key", help="default: TESTRUN_API_KEY, else DATA_DIR/api-key")
    rebuild = commands.add_parser("rebuild-projections", help="rebuild every read model")
    rebuild.add_argument(
        "--verify", action="store_true", help="prove the rebuilt rows equal the current ones"
    )
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")
    rebuild.add_argument(
        "--online",
        action="store_true",
        help="while the service runs: catch up in rounds first, so the final lock is short",
    )
    rebuild.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        help="processes folding streams (default: one per core, 200,000 events each at least)",
    )
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        msg = f"must be at least 1, got {value}"
        raise argparse.ArgumentTypeError(msg)
    return value


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = build_parser()
    args = parser.parse_args(argv)

    config = Config.from_env()
    service_logging.configure(config.log_format, config.log_level)
    if args.command == "serve":
        _run(serve(config))
        return 0
    if args.command == "worker":
        _run(work(config))
        return 0
    if args.command == "migrate":
        _run(db.migrate(resolve_dsn(config)))
        return 0
    if args.command == "demo":
        from service.ops import demo as demo_command  # noqa: PLC0415  (an HTTP client only)

        return demo_command.main(
            url=args.url,
            api_key=args.api_key,
            host=config.host,
            port=config.port,
            data_dir=config.data_dir,
        )
    from service.ops import replay as cli  # noqa: PLC0415  (the audit commands load only when used)

    _settle_garbage_collector()  # a rebuild decodes millions of objects

    if args.command == "keys":
        if args.action == "create" and not (args.organisation or args.new_organisation):
            parser.error("keys create needs --organisation ID or --new-organisation NAME")
        return _run(
            cli.keys_command(
                resolve_dsn(config),
                args.action,
                organisation_id=args.organisation,
                new_organisation=args.new_organisation,
                name=args.name,
                key_id=args.key_id,
            )
        )
    if args.command == "projections":
        return _run(cli.projections_status(resolve_dsn(config)))
    if args.command == "replay-run":
        return _run(
            cli.replay_run(resolve_dsn(config), args.run_id, as_json=args.json, verify=args.verify)
        )
    if args.command == "repair-after-restore":
        from service.ops import repair  # noqa: PLC0415  (loads only when used)

        return _run(repair.repair_after_restore(resolve_dsn(config), burn=not args.no_burn))
    if args.command == "export-events":
        from service.ops import export  # noqa: PLC0415  (loads only when used)

        try:
            since = export.parse_time(args.since) if args.since else None
            until = export.parse_time(args.until) if args.until else None
        except ValueError as error:
            parser.error(str(error))
        return _run(
            export.export_events(
                resolve_dsn(config),
                run_id=args.run_id,
                organisation_id=args.organisation_id,
                since=since,
                until=until,
            )
        )
    return _run(
        cli.rebuild_projections(
            resolve_dsn(config),
            verify=args.verify,
            progress=not args.no_progress,
            online=args.online,
            jobs=args.jobs,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
