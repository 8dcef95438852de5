"""Per-key rate limiting of `/v1`: a token bucket per API key, in this process.

Each key gets `burst` tokens, refilled at `rate` per second; a request takes
one, and a request that finds none is answered 429 with `Retry-After` (whole
seconds until a token is back, at least 1). The buckets live in memory, so
with several server processes each one limits on its own: the deployment's
limit is the per-process one times the number of processes.

Memory is bounded: at most `MAX_BUCKETS` keys are tracked, the least recently
seen one is forgotten first. A forgotten bucket comes back full, which is what
it would have refilled to anyway unless more than `MAX_BUCKETS` other keys were
active in the meantime.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from aiohttp import web

from service.http.errors import ApiError
from service.http.middleware import PRINCIPAL, Handler

MAX_BUCKETS = 10_000


class RateLimitedError(ApiError):
    """429: this key has used its requests for now; `Retry-After` says when to come back."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429,
            "rate_limited",
            f"Too many requests for this API key: retry after {retry_after_s} s",
            {"retry_after_s": retry_after_s},
        )
        self.retry_after_s = retry_after_s

    def response(self) -> web.Response:
        """The JSON 429, with `Retry-After` in seconds."""
        response = super().response()
        response.headers["Retry-After"] = str(self.retry_after_s)
        return response


class RateLimiter:
    """Token buckets keyed by API key id.

    Args:
        rate: tokens added per second (> 0).
        burst: the most tokens a bucket holds: requests allowed at once (>= 1).
        max_buckets: the most keys tracked at a time.
        clock: seconds from a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_buckets: int = MAX_BUCKETS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (0 < rate < math.inf) or burst < 1 or max_buckets < 1:
            msg = f"a rate limit needs rate > 0, burst >= 1, max_buckets >= 1: {rate}, {burst}"
            raise ValueError(msg)
        self.rate = rate
        self.burst = burst
        self._max_buckets = max_buckets
        self._clock = clock
        # key -> (tokens, when they were counted); oldest use first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str) -> float:
        """Take a token for `key`: 0.0 if there was one, else seconds until there is."""
        now = self._clock()
        tokens, counted = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self._max_buckets:
            self._buckets.popitem(last=False)
        return wait


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)


def limiter(rate: float, burst: int) -> RateLimiter | None:
    """The limiter of `rate` requests per second per key, `burst` at once; None if `rate` is 0.

    `burst` 0 means one second's worth of requests (at least 1).
    """
    if rate <= 0:
        return None
    return RateLimiter(rate, burst if burst >= 1 else max(1, math.ceil(rate)))


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """429 a `/v1` request whose key has no token left; others pass untouched.

    Runs after `edge` authenticated the request: only `/v1` requests have a
    principal, so health, metrics and the docs are never limited.
    """
    found = request.get(PRINCIPAL)
    if found is not None:
        wait = request.app[RATE_LIMITER].take(found.api_key_id)
        if wait > 0:
            raise RateLimitedError(max(1, math.ceil(wait)))
    return await handler(request)
