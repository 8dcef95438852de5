"""Audit replay: a run's events, each with the run's state after it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from events.types import RecordedEvent
from projections.fold import step
from projections.resources import WorkflowTestResult, WorkflowTestRun


@dataclass(frozen=True)
class ReplayStep:
    """One event and the run as it stood after it."""

    event: RecordedEvent
    run: WorkflowTestRun
    changed: list[WorkflowTestResult]


def replay(
    events: Sequence[RecordedEvent],
) -> tuple[list[ReplayStep], dict[str, WorkflowTestResult]]:
    """Fold a stream step by step; return each step and the final results."""
    run: WorkflowTestRun | None = None
    results: dict[str, WorkflowTestResult] = {}
    steps: list[ReplayStep] = []
    for event in events:
        run, touched = step(run, results, event)
        for result in touched:
            results[result.id] = result
        steps.append(ReplayStep(event=event, run=run, changed=touched))
    return steps, results
