"""`python -m service serve|migrate|replay-run|rebuild-projections`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import structlog
from aiohttp import web

from projections.asynchronous import follow
from projections.summaries import LatestRunSummaries
from service import db, keys
from service import logging as service_logging
from service.app import create_app
from service.config import Config
from service.metrics import METRICS
from service.runner import Runner

log = structlog.get_logger("service")

T = TypeVar("T")


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
    dsn = resolve_dsn(config)
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max)
    try:
        key = await keys.bootstrap(pool, config.bootstrap_api_key)
        if key is not None:
            print(f"Created an organisation and its API key (shown once): {key}", flush=True)
        app = create_app(pool, config)
        http = web.AppRunner(app, access_log=None)
        await http.setup()
        site = web.TCPSite(http, config.host, config.port)
        await site.start()
        log.info("serving", url=f"http://{config.host}:{config.port}")
        stop = _stop_on_signals()
        # The async projections (each saved test's latest run summaries).
        summaries = asyncio.create_task(follow(pool, [LatestRunSummaries()], stop))
        tests = None
        if config.runner_enabled:
            runner = Runner(pool, config, dsn, metrics=app[METRICS])  # counted on /metrics
            tests = asyncio.create_task(runner.run(stop))
            tests.add_done_callback(_report_runner_exit)
        await stop.wait()
        log.info("shutting_down")
        # In-flight requests finish; the runner finishes or releases its tests.
        await http.cleanup()
        if tests is not None:
            await tests
        await summaries
    finally:
        await pool.close()


async def work(config: Config) -> None:
    """Run tests (no HTTP) until SIGTERM or SIGINT: one more runner on the same database."""
    dsn = resolve_dsn(config)
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max)
    try:
        await Runner(pool, config, dsn).run(_stop_on_signals())
    finally:
        await pool.close()


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run the service's coroutine on uvloop when it is installed."""
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:
        return asyncio.run(main)
    result: T = uvloop.run(main)
    return result


def main(argv: list[str] | None = None) -> int:
    """The command line."""
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
    rebuild = commands.add_parser("rebuild-projections", help="rebuild every read model")
    rebuild.add_argument(
        "--verify", action="store_true", help="prove the rebuilt rows equal the current ones"
    )
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")
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
        asyncio.run(db.migrate(resolve_dsn(config)))
        return 0
    from service import cli  # noqa: PLC0415  (the audit commands load only when used)

    if args.command == "replay-run":
        return asyncio.run(
            cli.replay_run(resolve_dsn(config), args.run_id, as_json=args.json, verify=args.verify)
        )
    return asyncio.run(
        cli.rebuild_projections(
            resolve_dsn(config), verify=args.verify, progress=not args.no_progress
        )
    )


if __name__ == "__main__":
    sys.exit(main())
