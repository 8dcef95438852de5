"""Audit replay: a run's events, each with the run's state after it."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from events.types import RecordedEvent
from projections.fold import step
from projections.resources import WorkflowTestResult, WorkflowTestRun


@dataclass(frozen=True)
class ReplayStep:
    """One event and the run as it stood after it."""

    event: RecordedEvent
    run: WorkflowTestRun
    changed: list[WorkflowTestResult]


@dataclass
class Replay:
    """Folds a stream one event at a time; holds only the current state.

    Memory is the run and its results (what the fold needs), never the history:
    a stream of any length replays in the same space.
    """

    run: WorkflowTestRun | None = None
    results: dict[str, WorkflowTestResult] = field(default_factory=dict)
    version: int = 0
    events: int = 0

    async def steps(self, events: AsyncIterable[RecordedEvent]) -> AsyncIterator[ReplayStep]:
        """Each event with the run's state after it, as the events arrive."""
        async for event in events:
            run, touched = step(self.run, self.results, event.event, event.occurred_at)
            for result in touched:
                self.results[result.id] = result
            self.run, self.version = run, event.version
            self.events += 1
            yield ReplayStep(event=event, run=run, changed=touched)
