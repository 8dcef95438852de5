"""The aiohttp application: its state, middleware and routes."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from events.store import EventStore
from service.config import Config
from service.handlers.common import POOL, STORE
from service.idempotency import idempotency
from service.keys import KeyLookup
from service.metrics import METRICS, Metrics, measure
from service.middleware import KEYS, edge
from service.routes import add_routes

CONFIG = web.AppKey("config", Config)


def create_app(pool: asyncpg.Pool, config: Config) -> web.Application:
    """The application on a migrated database's pool."""
    # measure wraps edge, so it counts the final status (errors already JSON, 401s too);
    # edge (request id, auth, errors as JSON) is next; idempotency needs the caller.
    app = web.Application(
        middlewares=[measure, edge, idempotency], client_max_size=config.max_body_bytes
    )
    app[CONFIG] = config
    app[POOL] = pool
    app[STORE] = EventStore(pool)
    app[KEYS] = KeyLookup(pool)
    app[METRICS] = Metrics()
    add_routes(app)
    return app
