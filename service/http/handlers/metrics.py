"""`/metrics`: the application's metrics for Prometheus (no API key, like `/healthz`)."""

from __future__ import annotations

from aiohttp import web

from service.http.handlers.common import POOL
from service.http.measure import METRICS


async def metrics(request: web.Request) -> web.Response:
    """Every metric of this application, the database's read now; served even when it is down."""
    app_metrics = request.app[METRICS]
    await app_metrics.observe_database(request.app[POOL])
    body, content_type = app_metrics.exposition(request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
