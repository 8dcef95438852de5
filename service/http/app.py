"""The aiohttp application: its state, middleware and routes."""

from __future__ import annotations

import asyncpg
from aiohttp import web

from events.store import EventStore
from service.config import Config
from service.http import ratelimit, transport
from service.http.handlers.common import POOL, STORE
from service.http.idempotency import idempotency
from service.http.measure import METRICS, measure
from service.http.middleware import KEYS, edge
from service.http.routes import add_routes
from service.metrics import Metrics
from service.ops.keys import KeyLookup

CONFIG = web.AppKey("config", Config)
# The longest request line and header field (aiohttp's default is 8190 bytes).
MAX_LINE_BYTES = 65536


def create_app(pool: asyncpg.Pool, config: Config) -> web.Application:
    """The application on a migrated database's pool."""
    # measure wraps edge, so it counts the final status (errors already JSON, 401s too);
    # edge (request id, auth, errors as JSON) is next; idempotency needs the caller.
    # rate_limit needs the caller too, and comes before idempotency: a replay is a request.
    limiter = ratelimit.limiter(config.rate_limit_per_s, config.rate_limit_burst)
    limiting = [ratelimit.rate_limit] if limiter is not None else []
    app = web.Application(
        middlewares=[measure, edge, *limiting, idempotency],
        client_max_size=config.max_body_bytes,
        # aiohttp's parser answers a longer request line or header field itself, in
        # plain text that no middleware sees; long enough that an oversized id or
        # query reaches the edge and gets its JSON 404 or 422.
        handler_args={
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_LINE_BYTES,
            **transport.connection_options(config.http_headers_timeout_s),
        },
    )
    if limiter is not None:
        app[ratelimit.RATE_LIMITER] = limiter
    app[CONFIG] = config
    app[transport.BODY_LIMITS] = transport.BodyLimits(
        max_bytes=config.max_body_bytes, timeout_s=config.http_body_timeout_s
    )
    app[POOL] = pool
    app[STORE] = EventStore(pool)
    app[KEYS] = KeyLookup(pool, config.key_cache_s)
    app[METRICS] = Metrics()
    add_routes(app)
    transport.install_expect_handler(app)
    return app
