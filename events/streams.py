"""Stream names: every stream is `category-id`; a run's is `run-<run_id>`.

The one place that spells a stream's name, for writers and readers alike.
"""

from __future__ import annotations

RUN_CATEGORY = "run"


def stream_of(run_id: str) -> str:
    """The stream of a run's events."""
    return f"{RUN_CATEGORY}-{run_id}"
