"""`python -m service serve|migrate|replay-run|rebuild-projections`."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import structlog
from aiohttp import web

from service import db, keys
from service import logging as service_logging
from service.app import create_app
from service.config import Config

log = structlog.get_logger("service")


def resolve_dsn(config: Config) -> str:
    """`DATABASE_URL`, or the embedded PostgreSQL in the data folder when it is unset."""
    if config.database_url:
        return config.database_url
    return db.start_embedded(config.data_dir.resolve() / "postgres")


async def serve(config: Config) -> None:
    """Migrate, make sure a key exists, and serve until SIGTERM or SIGINT."""
    dsn = resolve_dsn(config)
    await db.migrate(dsn)
    pool = await db.create_pool(dsn, min_size=config.db_pool_min, max_size=config.db_pool_max)
    try:
        key = await keys.bootstrap(pool, config.bootstrap_api_key)
        if key is not None:
            print(f"Created an organisation and its API key (shown once): {key}", flush=True)
        runner = web.AppRunner(create_app(pool, config), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        log.info("serving", url=f"http://{config.host}:{config.port}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting_down")
        await runner.cleanup()
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m service")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="migrate and serve the API")
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
        asyncio.run(serve(config))
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
