"""Metrics at the edge: the app's `Metrics`, and the middleware that counts and times requests."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from service.metrics import Metrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METRICS = web.AppKey("metrics", Metrics)
# The route label of a request no route matched (a 404 of an unknown path).
UNMATCHED = "unmatched"


@web.middleware
async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request with the status the client receives.

    It wraps `edge` (aiohttp makes the first middleware of the list the
    outermost): edge turns every error into its JSON response, so what this
    sees is always the final response, 401s of the auth check included.
    """
    started = time.perf_counter()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED
    request.app[METRICS].observe_request(
        request.method, route, response.status, time.perf_counter() - started
    )
    return response
