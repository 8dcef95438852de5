"""Per-key rate limiting: a token bucket per API key, 429 with `Retry-After`, off by default."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from service.config import Config
from service.http import ratelimit
from tests.helpers import API_KEY, OTHER_API_KEY, ApiClient


@asynccontextmanager
async def _serving(pool: asyncpg.Pool, config: Config) -> AsyncIterator[ApiClient]:
    from aiohttp.test_utils import TestClient, TestServer

    from service.http.app import create_app
    from service.ops import keys

    await keys.bootstrap(pool, API_KEY)
    async with pool.acquire() as conn:
        other = await keys.create_organisation(conn, "other")
        await keys.store_key(conn, other, OTHER_API_KEY, "other")
    async with TestClient(TestServer(create_app(pool, config))) as http:
        yield ApiClient(http)


async def _status(client: ApiClient, key: str = API_KEY) -> Any:
    response = await client.http.get("/v1/workflows", headers={"Authorization": f"Bearer {key}"})
    await response.read()
    return response


async def test_the_request_after_the_burst_is_429_with_retry_after(pool: asyncpg.Pool) -> None:
    """With a burst of 5, the 6th request is a JSON 429 with Retry-After; later it passes."""
    config = Config(rate_limit_per_s=1.0, rate_limit_burst=5)
    async with _serving(pool, config) as client:
        statuses = [(await _status(client)).status for _ in range(5)]
        assert [200] * 5 == statuses
        limited = await _status(client)
        assert 429 == limited.status
        retry_after = int(limited.headers["Retry-After"])
        assert 1 == retry_after
        body = await limited.json()
        assert "rate_limited" == body["detail"]["code"]
        assert retry_after == body["detail"]["details"]["retry_after_s"]
        assert limited.headers["X-Request-Id"]
        # Another organisation's key has its own bucket.
        assert 200 == (await _status(client, OTHER_API_KEY)).status
        # Health, metrics and the docs are never limited.
        for path in ("/healthz", "/metrics", "/openapi.json", "/healthz"):
            assert 200 == (await client.http.get(path)).status
        await asyncio.sleep(retry_after + 0.1)
        assert 200 == (await _status(client)).status


async def test_rate_limiting_is_off_by_default(pool: asyncpg.Pool) -> None:
    """With the default configuration no request is ever limited, and 429 is not documented."""
    assert 0 == Config.from_env({}).rate_limit_per_s
    async with _serving(pool, Config()) as client:
        statuses = {(await _status(client)).status for _ in range(30)}
        assert {200} == statuses
        document = await client.call("GET", "/openapi.json", key=None, expect=200)
        assert "429" not in document["paths"]["/v1/workflows"]["get"]["responses"]


async def test_the_openapi_document_declares_the_429_when_limiting(pool: asyncpg.Pool) -> None:
    """Every `/v1` operation documents 429 and its Retry-After header when limiting is on."""
    async with _serving(pool, Config(rate_limit_per_s=10.0)) as client:
        document = await client.call("GET", "/openapi.json", key=None, expect=200)
    for path, methods in document["paths"].items():
        for operation in methods.values():
            declared = "429" in operation["responses"]
            assert declared == path.startswith("/v1/"), path
            if declared:
                headers = operation["responses"]["429"]["headers"]
                assert "Retry-After" in headers


def test_configuration_from_the_environment() -> None:
    """RATE_LIMIT_PER_S and RATE_LIMIT_BURST; a burst of 0 means one second's worth."""
    config = Config.from_env({"RATE_LIMIT_PER_S": "2.5", "RATE_LIMIT_BURST": "7"})
    assert (2.5, 7) == (config.rate_limit_per_s, config.rate_limit_burst)
    assert ratelimit.limiter(0, 5) is None
    limiter = ratelimit.limiter(2.5, 0)
    assert limiter is not None
    assert 3 == limiter.burst


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _limiter(clock: Callable[[], float], **kwargs: Any) -> ratelimit.RateLimiter:
    return ratelimit.RateLimiter(2.0, 3, clock=clock, **kwargs)


def test_a_bucket_refills_at_the_rate() -> None:
    """Burst 3 at 2 per second: 3 pass, the 4th waits 0.5 s; after 0.5 s one more passes."""
    clock = _Clock()
    limiter = _limiter(clock)
    assert [0.0, 0.0, 0.0] == [limiter.take("k") for _ in range(3)]
    assert 0.5 == limiter.take("k")
    clock.now += 0.5
    assert 0.0 == limiter.take("k")
    assert 0.5 == limiter.take("k")
    # Idle for long: back to the burst, never more.
    clock.now += 3600
    assert [0.0, 0.0, 0.0] == [limiter.take("k") for _ in range(3)]
    assert limiter.take("k") > 0


def test_the_buckets_are_bounded() -> None:
    """At most max_buckets keys are tracked; the least recently seen is forgotten first."""
    clock = _Clock()
    limiter = _limiter(clock, max_buckets=100)
    for number in range(10_000):
        limiter.take(f"key-{number}")
    assert 100 == len(limiter)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_a_limiter_needs_a_positive_rate_and_burst(rate: float, burst: int) -> None:
    """A zero, negative or infinite rate, or an empty burst, is a configuration error."""
    with pytest.raises(ValueError, match="rate limit"):
        ratelimit.RateLimiter(rate, burst)
