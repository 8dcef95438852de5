"""HTTP load for scripts/bench: a minimal reference server and a load generator.

    python scripts/bench_http.py minimal PORT BODY_FILE CONTENT_TYPE
        serves GET /ref with exactly the bytes of BODY_FILE (aiohttp on uvloop, no
        database, no middleware): the reference the real GET is compared with.
    python scripts/bench_http.py load URL SECONDS CONNECTIONS [HEADER ...]
        keeps CONNECTIONS keep-alive connections busy with GETs for SECONDS and
        prints one JSON object: requests, errors, requests_per_s, p50_ms, p99_ms.

`measure` drives the load from a separate process: wrk (from the Debian package)
when it is on PATH, else the aiohttp load generator above.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

_WRK_SCALE = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _uvloop_run(main: Any) -> Any:
    try:
        import uvloop  # noqa: PLC0415
    except ImportError:  # pragma: no cover  (uvloop is a dependency off Windows)
        return asyncio.run(main)
    return uvloop.run(main)


def minimal(port: int, body_file: str, content_type: str, dsn: str | None = None) -> None:
    """Serve the same bytes as the real GET, with no database: the reference.

    With `dsn`, each request first runs `SELECT 1` through an asyncpg pool of
    the service's size: the floor of any handler that asks PostgreSQL anything.
    Its connections are the service's (`service.db.ServiceConnection`), which
    skip asyncpg's reset on release (`RESET ALL` and the rest, a round trip
    per request).
    """
    body = Path(body_file).read_bytes()
    pools: list[Any] = []

    async def handler(_: web.Request) -> web.Response:
        if pools:
            await pools[0].fetchval("SELECT 1")
        return web.Response(body=body, headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/ref", handler)

    async def serve() -> None:
        if dsn is not None:
            import asyncpg  # noqa: PLC0415

            from service.db import ServiceConnection  # noqa: PLC0415

            pools.append(
                await asyncpg.create_pool(
                    dsn, min_size=10, max_size=10, connection_class=ServiceConnection
                )
            )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        await asyncio.Event().wait()

    _uvloop_run(serve())


async def _load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> None:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    async with session.get(url) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": errors,
                "requests_per_s": len(latencies) / elapsed,
                "p50_ms": quantiles[49] * 1000,
                "p99_ms": quantiles[98] * 1000,
            }
        )
    )


def _parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and errors from `wrk --latency` output."""

    def latency(label: str) -> float:
        found = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if found is None:
            msg = f"no {label}% latency in wrk output:\n{output}"
            raise RuntimeError(msg)
        return float(found.group(1)) * _WRK_SCALE[found.group(2)]

    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in", output, re.MULTILINE)
    if rate is None or total is None:
        msg = f"unexpected wrk output:\n{output}"
        raise RuntimeError(msg)
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return {
        "requests": float(total.group(1)),
        "errors": float(errors),
        "requests_per_s": float(rate.group(1)),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
    }


def measure(
    url: str, seconds: float, connections: int, headers: dict[str, str]
) -> dict[str, float]:
    """Load `url` from a separate process; requests/s, p50 and p99 (ms), errors."""
    wrk = shutil.which("wrk")
    if wrk is not None:
        command = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url]
        for name, value in headers.items():
            command[1:1] = ["-H", f"{name}: {value}"]
        output = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 60
        ).stdout
        return {**_parse_wrk(output), "wrk": 1.0}
    command = [sys.executable, __file__, "load", url, str(seconds), str(connections)]
    command += [f"{name}: {value}" for name, value in headers.items()]
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    result: dict[str, float] = json.loads(output)
    return {**result, "wrk": 0.0}


if __name__ == "__main__":
    if sys.argv[1] == "minimal":
        minimal(int(sys.argv[2]), sys.argv[3], sys.argv[4], *sys.argv[5:6])
    elif sys.argv[1] == "load":
        sent: dict[str, str] = {}
        for header in sys.argv[5:]:
            name, value = header.split(": ", 1)
            sent[name] = value
        _uvloop_run(_load(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sent))
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
