"""The pure fold of a run's stream into its resource and its results.

`evolve(state, event) -> state` has no I/O, no clock and no randomness: the
inline projection, the rebuild and the audit replay all use it, so they agree.

Every test of a run is in exactly one lifecycle bucket, and every completed test
in exactly one outcome bucket. The fold keeps that true by construction: each
event moves a result from the bucket it is in to another, and an event that does
not apply to a result's state (a second outcome, a start after a cancel) changes
nothing. The commands never emit such events; the fold does not trust them to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import msgspec

from events.types import (
    RecordedEvent,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunErrored,
    RunEvent,
    RunQueued,
    TestBlocked,
    TestErrored,
    TestFailed,
    TestPassed,
    TestStarted,
    type_of,
)
from projections.resources import (
    TERMINAL,
    BlockTarget,
    Cancelled,
    Completed,
    Errored,
    Freshness,
    Lifecycle,
    LifecycleCounts,
    OutcomeCounts,
    Pending,
    Queued,
    Running,
    Timing,
    VerdictSummary,
    WorkflowRef,
    WorkflowTestResult,
    WorkflowTestRun,
    make_counts,
)

replace = msgspec.structs.replace


class RunView(msgspec.Struct, frozen=True, kw_only=True):
    """A run and all of its results, as of `version` of its stream."""

    run: WorkflowTestRun
    results: dict[str, WorkflowTestResult]
    version: int


class FoldError(ValueError):
    """The stream does not start with `run.created`."""


def evolve(state: RunView | None, event: RecordedEvent) -> RunView:
    """The state after one more event."""
    run = state.run if state is not None else None
    results: Mapping[str, WorkflowTestResult] = state.results if state is not None else {}
    new_run, changed = step(run, results, event.event, event.occurred_at)
    merged = dict(results)
    for result in changed:
        merged[result.id] = result
    return RunView(run=new_run, results=merged, version=event.version)


def fold(events: Iterable[RecordedEvent], state: RunView | None = None) -> RunView | None:
    """Fold a whole stream (or the rest of one onto `state`)."""
    for event in events:
        state = evolve(state, event)
    return state


def step(
    run: WorkflowTestRun | None,
    results: Mapping[str, WorkflowTestResult],
    event: RunEvent,
    at: datetime,
) -> tuple[WorkflowTestRun, list[WorkflowTestResult]]:
    """Apply one event (its payload, and when it occurred): the new run, and the
    results it changed.

    `results` needs to hold the results the event names (all of them for
    `run.cancelled` and `run.errored`). The rebuild and the inline projection
    call this directly to avoid copying every result for every event.
    """
    match event:
        case RunCreated() as created:
            return _created(created, at)
    if run is None:
        msg = f"the first event must be run.created, not {type_of(event)}"
        raise FoldError(msg)
    match event:
        case RunQueued():
            if isinstance(run.lifecycle, Pending):
                run = replace(run, lifecycle=Queued())
            return run, []
        case TestStarted(result_id=result_id):
            result = results.get(result_id)
            if (
                result is None
                or not isinstance(result.lifecycle, Pending | Queued)
                or isinstance(run.lifecycle, TERMINAL)
            ):
                return run, []  # a retry of a running test, or a start that cannot apply
            started = replace(
                result, lifecycle=Running(), timing=replace(result.timing, started_at=at)
            )
            run = _move(run, result.lifecycle, Running())
            if run.timing.started_at is None:
                run = replace(run, timing=replace(run.timing, started_at=at))
            if isinstance(run.lifecycle, Pending | Queued):
                run = replace(run, lifecycle=Running())
            return run, [started]
        case TestPassed() | TestFailed() | TestBlocked() as outcome:
            result = results.get(outcome.result_id)
            if result is None or isinstance(result.lifecycle, TERMINAL):
                return run, []
            verdict = _VERDICTS[type(outcome)]
            done = replace(
                result,
                lifecycle=Completed(),
                timing=_finish(result.timing, at),
                verdict=verdict,
                handle_outputs=_typed(outcome.handle_outputs),
                warnings=list(outcome.warnings),
                assertion_result=outcome.assertion_result,
                verdict_summary=_summary(verdict, outcome.assertion_result),
            )
            return _move(run, result.lifecycle, Completed(), verdict), [done]
        case TestErrored(result_id=result_id, message=message, details=details):
            result = results.get(result_id)
            if result is None or isinstance(result.lifecycle, TERMINAL):
                return run, []
            errored = replace(
                result,
                lifecycle=Errored(message=message, details=details),
                timing=_finish(result.timing, at),
            )
            return _move(run, result.lifecycle, errored.lifecycle), [errored]
        case RunCompleted():
            return _end(run, Completed(), at), []
        case RunCancelled(reason=reason):
            return _end_and_cancel_waiting(run, results, Cancelled(reason=reason), at)
        case RunErrored(message=message, details=details):
            return _end_and_cancel_waiting(
                run, results, Errored(message=message, details=details), at
            )
    msg = f"unknown event {type_of(event)}"
    raise FoldError(msg)


_VERDICTS: dict[type, Any] = {TestPassed: "passed", TestFailed: "failed", TestBlocked: "blocked"}


def _created(created: RunCreated, at: datetime) -> tuple[WorkflowTestRun, list[WorkflowTestResult]]:
    total = len(created.tests)
    scope = created.scope
    target: BlockTarget | None = None
    if scope.type == "block" and scope.block_id is not None:
        target = BlockTarget(block_id=scope.block_id)
    elif scope.type == "single" and created.tests:
        target = BlockTarget(block_id=created.tests[0].block_id)
    run = WorkflowTestRun(
        id=created.run_id,
        workflow_id=created.workflow_id,
        workflow_version_id=created.workflow_version_id,
        workflow=WorkflowRef(
            workflow_id=created.workflow_id, version_id=created.workflow_version_id
        ),
        trigger=created.trigger,
        lifecycle=Pending(),
        timing=Timing(created_at=at),
        test_id=scope.test_id if scope.type == "single" else None,
        eval_id=scope.test_id if scope.type == "single" else None,
        target=target,
        total_tests=total,
        total_evals=total,
        counts=make_counts(LifecycleCounts(queued=total), OutcomeCounts()),
        # The baseline that freshness compares the current draft with at read time.
        freshness=Freshness(
            status="fresh",
            validity_fingerprint=created.validity_fingerprint,
            input_fingerprint=created.input_fingerprint,
            baseline_run_id=created.run_id,
        ),
    )
    results = [
        WorkflowTestResult(
            id=test.result_id,
            workflow_test_run_id=created.run_id,
            test_id=test.test_id,
            workflow_eval_run_id=created.run_id,
            eval_id=test.test_id,
            workflow_id=created.workflow_id,
            block_id=test.block_id,
            block_type=test.block_type,
            lifecycle=Queued(),
            timing=Timing(created_at=at),
            handle_inputs=test.handle_inputs,
            handle_inputs_fingerprint=test.handle_inputs_fingerprint,
            block_config_fingerprint=test.block_config_fingerprint,
            block_execution_fingerprint=test.block_config_fingerprint,
            workflow_draft_fingerprint=created.workflow_draft_fingerprint,
            execution_fingerprint=test.execution_fingerprint,
        )
        for test in created.tests
    ]
    return run, results


_BUCKET = {
    Pending: "pending",
    Queued: "queued",
    Running: "running",
    Completed: "completed",
    Errored: "error",
    Cancelled: "cancelled",
}


def _move(
    run: WorkflowTestRun, source: Lifecycle, target: Lifecycle, verdict: str | None = None
) -> WorkflowTestRun:
    """Move one test from one lifecycle bucket to another (and into an outcome bucket)."""
    lifecycle = run.counts.lifecycle_counts
    from_bucket, to_bucket = _BUCKET[type(source)], _BUCKET[type(target)]
    lifecycle = replace(
        lifecycle,
        **{from_bucket: getattr(lifecycle, from_bucket) - 1},
    )
    lifecycle = replace(lifecycle, **{to_bucket: getattr(lifecycle, to_bucket) + 1})
    outcome = run.counts.outcome
    if verdict is not None:
        outcome = replace(outcome, **{verdict: getattr(outcome, verdict) + 1})
    return replace(run, counts=make_counts(lifecycle, outcome))


def _finish(timing: Timing, at: datetime) -> Timing:
    started = timing.started_at or at
    return replace(
        timing, started_at=started, completed_at=at, duration_ms=_milliseconds(started, at)
    )


def _milliseconds(start: datetime, end: datetime) -> int:
    return max(0, round((end - start).total_seconds() * 1000))


def _end(run: WorkflowTestRun, lifecycle: Lifecycle, at: datetime) -> WorkflowTestRun:
    if isinstance(run.lifecycle, TERMINAL):
        return run
    started = run.timing.started_at
    timing = replace(
        run.timing,
        completed_at=at,
        duration_ms=_milliseconds(started, at) if started is not None else None,
    )
    return replace(run, lifecycle=lifecycle, timing=timing)


def _end_and_cancel_waiting(
    run: WorkflowTestRun,
    results: Mapping[str, WorkflowTestResult],
    lifecycle: Cancelled | Errored,
    at: datetime,
) -> tuple[WorkflowTestRun, list[WorkflowTestResult]]:
    """End the run; tests that never started are cancelled. Running tests keep running:
    their outcomes are still recorded, but do not reopen the run."""
    if isinstance(run.lifecycle, TERMINAL):
        return run, []
    reason = lifecycle.reason if isinstance(lifecycle, Cancelled) else "run errored"
    cancelled: list[WorkflowTestResult] = []
    for result in results.values():
        if isinstance(result.lifecycle, Pending | Queued):
            run = _move(run, result.lifecycle, Cancelled())
            cancelled.append(
                replace(
                    result,
                    lifecycle=Cancelled(reason=reason),
                    timing=replace(result.timing, completed_at=at),
                )
            )
    return _end(run, lifecycle, at), cancelled


def _typed(outputs: dict[str, Any] | None) -> dict[str, Any] | None:
    """Handle values in the API's typed form `{HANDLE: {type: "json", data: value}}`."""
    if outputs is None:
        return None
    return {handle: {"type": "json", "data": value} for handle, value in outputs.items()}


def _summary(verdict: str, assertion: Any) -> VerdictSummary:
    failed_ids = [assertion.assertion_id] if assertion is not None and verdict == "failed" else []
    return VerdictSummary(
        passed=verdict == "passed",
        assertions_passed=1 if verdict == "passed" else 0,
        assertions_failed=1 if verdict == "failed" else 0,
        blocked_assertions=1 if verdict == "blocked" else 0,
        failed_assertion_ids=failed_ids,
    )


def results_needed(events: Iterable[RecordedEvent]) -> set[str] | None:
    """The result ids that folding these events reads; None means all of them."""
    needed: set[str] = set()
    for event in events:
        match event.event:
            case RunCancelled() | RunErrored():
                return None
            case TestStarted() | TestPassed() | TestFailed() | TestBlocked() | TestErrored():
                needed.add(event.event.result_id)
    return needed
