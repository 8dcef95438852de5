"""Retrying after the database failed: one backoff, and the error as a log line says it.

Every background loop that talks to PostgreSQL (the runner, the async
projections' leader, the feed's LISTEN connection) meets the same failures: a
restart, a refused connection, a broken socket. Each logs the error, waits with
a `Backoff`, and carries on.
"""

from __future__ import annotations


class Backoff:
    """Exponential delays for a loop that retries after failures: first, doubled, capped.

    `reset` after a success, so the next failure starts small again.
    """

    def __init__(self, first_s: float = 0.1, most_s: float = 5.0) -> None:
        self.first_s = first_s
        self.most_s = most_s
        self.failures = 0

    def delay(self, failures: int) -> float:
        """The wait after `failures` failures in a row: `first_s`, doubled each time, capped."""
        return float(min(self.most_s, self.first_s * 2 ** max(0, failures - 1)))

    def next(self) -> float:
        """The delay before the next try; the one after doubles, up to `most_s`."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        """Back to the first delay (after a success)."""
        self.failures = 0


def describe_error(error: BaseException) -> str:
    """`Type: message`, for a log line."""
    return f"{type(error).__name__}: {error}"
