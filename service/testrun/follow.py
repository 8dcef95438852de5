"""Following a run to its end: its Server-Sent Events feed, or polling when that fails."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, TextIO

import aiohttp

from service.testrun.api import Client, SseUnavailableError

__all__ = ["TERMINAL", "Progress", "Tally", "follow"]

TERMINAL = frozenset({"completed", "error", "cancelled"})
_TERMINAL_EVENTS = frozenset({"run.completed", "run.cancelled", "run.errored"})
_OUTCOME_EVENTS = {
    "test.passed": "passed",
    "test.failed": "failed",
    "test.blocked": "blocked",
    "test.errored": "error",
}
# Reconnects to the feed in a row before polling instead.
_SSE_FAILURES = 3
_POLL_S = 1.0
# Plain progress lines (not a terminal): at most one this often.
_LINE_EVERY_S = 2.0
_BAR_WIDTH = 30
# The bar is redrawn at most this often (a big run ends thousands of tests a second).
_REDRAW_S = 0.1


@dataclass
class Tally:
    """How many of a run's tests have ended, by verdict (`error`: could not complete)."""

    total: int
    passed: int = 0
    failed: int = 0
    blocked: int = 0
    error: int = 0

    @property
    def done(self) -> int:
        """Tests that have ended."""
        return self.passed + self.failed + self.blocked + self.error

    @classmethod
    def of_run(cls, run: dict[str, Any]) -> Tally:
        """The tally in a run resource's counts."""
        counts = run.get("counts") or {}
        return cls(
            total=int(run.get("total_tests", 0)),
            passed=int(counts.get("passed", 0)),
            failed=int(counts.get("failed", 0)),
            blocked=int(counts.get("blocked", 0)),
            error=int(counts.get("error", 0)),
        )

    def describe(self) -> str:
        """`3/8 tests done: 2 passed, 1 failed, 0 blocked, 0 error`."""
        return (
            f"{self.done}/{self.total} tests done: {self.passed} passed, {self.failed} failed, "
            f"{self.blocked} blocked, {self.error} error"
        )


class Progress:
    """A progress bar on a terminal, plain lines otherwise (a CI log), or nothing."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._tty = stream is not None and stream.isatty()
        self._started = time.monotonic()
        self._last_line = 0.0
        self._last_done = -1
        self._drawn = False

    def update(self, tally: Tally, *, final: bool = False) -> None:
        """Show the tally (a plain line only when it changed, and not too often)."""
        if self._stream is None:
            return
        elapsed = time.monotonic() - self._started
        if self._tty:
            now = time.monotonic()
            if not final and now - self._last_line < _REDRAW_S:
                return
            self._last_line = now
            filled = _BAR_WIDTH * tally.done // tally.total if tally.total else _BAR_WIDTH
            bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {tally.describe()} ({elapsed:.1f} s)\x1b[K")
            self._drawn = True
        else:
            now = time.monotonic()
            changed = tally.done != self._last_done
            if not changed or (not final and now - self._last_line < _LINE_EVERY_S):
                return
            self._stream.write(f"{tally.describe()} ({elapsed:.1f} s)\n")
            self._last_line, self._last_done = now, tally.done
        self._stream.flush()

    def close(self) -> None:
        """End the bar's line, so what follows starts on a fresh one."""
        if self._stream is not None and self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


async def follow(client: Client, run: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Wait until the run is terminal; returns the run as it ended.

    Follows the events feed (resuming with `Last-Event-ID` after a broken
    connection); after a few failures in a row, or when the feed is not an
    event stream, polls the run instead.
    """
    run_id = run["id"]
    progress.update(Tally.of_run(run))
    if run["lifecycle"]["status"] in TERMINAL:
        return run
    if await _follow_feed(client, run, progress):
        return await _settled(client, run_id)
    return await _poll(client, run_id, progress)


async def _follow_feed(client: Client, run: dict[str, Any], progress: Progress) -> bool:
    """True once the feed delivered the run's terminal event; False: poll instead."""
    # The feed replays the stream from its start: the tally is counted from zero.
    tally = Tally(total=int(run.get("total_tests", 0)))
    last_id: str | None = None
    failures = 0
    while failures < _SSE_FAILURES:
        try:
            async for event_id, name, _data in client.events(run["id"], last_id):
                last_id, failures = event_id, 0
                verdict = _OUTCOME_EVENTS.get(name)
                if verdict is not None:
                    setattr(tally, verdict, getattr(tally, verdict) + 1)
                    progress.update(tally)
                if name in _TERMINAL_EVENTS:
                    return True
        except SseUnavailableError:
            return False
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            pass
        # The stream ended or broke before the terminal event: resume where it stopped.
        failures += 1
        await asyncio.sleep(_POLL_S * failures)
    return False


async def _settled(client: Client, run_id: str) -> dict[str, Any]:
    """The run after its terminal event (the read model is written in the same transaction)."""
    while True:
        run: dict[str, Any] = await client.request("GET", f"/v1/workflows/tests/runs/{run_id}")
        if run["lifecycle"]["status"] in TERMINAL:
            return run
        await asyncio.sleep(_POLL_S / 4)


async def _poll(client: Client, run_id: str, progress: Progress) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = await client.request("GET", f"/v1/workflows/tests/runs/{run_id}")
        progress.update(Tally.of_run(run))
        if run["lifecycle"]["status"] in TERMINAL:
            return run
        await asyncio.sleep(_POLL_S)
