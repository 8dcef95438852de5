"""Properties of the fold over generated streams (Hypothesis).

Valid streams are generated the way the commands would write them: run.created,
then an interleaving of each test's attempts and outcome, perhaps a cancel or a
run error at any point, and run.completed once every test is terminal. Arbitrary
streams put any test event in any order after run.created: the fold must stay
consistent on those too, because it does not trust its input.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from events.types import (
    Metadata,
    RecordedEvent,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunErrored,
    RunEvent,
    RunQueued,
    Scope,
    TestBlocked,
    TestErrored,
    TestFailed,
    TestPassed,
    TestSnapshot,
    TestStarted,
)
from projections.fold import RunView, evolve, fold, results_needed, step
from projections.resources import (
    Cancelled,
    Completed,
    Counts,
    Errored,
    LifecycleCounts,
    OutcomeCounts,
    Pending,
    Queued,
    Running,
    WorkflowTestResult,
    make_counts,
)

RUN_ID = "wftestrun_prop"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TICK = timedelta(milliseconds=737)

SETTINGS = settings(max_examples=200, deadline=None)

Ending = Literal["passed", "failed", "blocked", "errored"]
ENDINGS: tuple[Ending, ...] = ("passed", "failed", "blocked", "errored")


def rid(n: int) -> str:
    """The result id of test number `n`."""
    return f"wfnodetestrun_{n}"


def snapshot(n: int) -> TestSnapshot:
    """The snapshot of test number `n`."""
    return TestSnapshot(
        result_id=rid(n),
        test_id=f"wfnodetest_{n}",
        block_id=f"blk_{n % 4}",
        block_type="function",
        block_config={},
        handle_inputs={"input-json-0": {"type": "json", "data": n}},
        assertion={},
        handle_inputs_fingerprint=f"inputs-{n}",
        block_config_fingerprint=f"config-{n}",
        validity_fingerprint=f"validity-{n}",
        execution_fingerprint=f"execution-{n}",
    )


def created(count: int) -> RunCreated:
    """A run.created of `count` tests."""
    return RunCreated(
        run_id=RUN_ID,
        organisation_id="org_1",
        workflow_id="wf_1",
        workflow_version_id="wfv_1",
        workflow_draft_fingerprint="draft-fp",
        scope=Scope(type="workflow"),
        tests=[snapshot(n) for n in range(count)],
        validity_fingerprint="validity-fp",
        input_fingerprint="input-fp",
        engine_fingerprint="engine-fp",
    )


def started(n: int, attempt: int = 1) -> TestStarted:
    """Test number `n` started its `attempt`."""
    return TestStarted(result_id=rid(n), test_id=f"wfnodetest_{n}", attempt=attempt)


def ended(n: int, ending: Ending) -> RunEvent:
    """The event that ends test number `n` this way."""
    test_id = f"wfnodetest_{n}"
    match ending:
        case "passed":
            return TestPassed(result_id=rid(n), test_id=test_id, handle_outputs={"out": n})
        case "failed":
            return TestFailed(result_id=rid(n), test_id=test_id)
        case "blocked":
            return TestBlocked(result_id=rid(n), test_id=test_id)
        case "errored":
            return TestErrored(result_id=rid(n), test_id=test_id, message="lease lost")


def recorded(events: list[RunEvent]) -> list[RecordedEvent]:
    """The events as recorded: versions 1, 2, ... at strictly increasing UTC times."""
    return [
        RecordedEvent(
            stream_id=f"run-{RUN_ID}",
            version=index + 1,
            global_position=index + 1,
            transaction_id=1,
            event_id=uuid.uuid4(),
            schema_version=1,
            occurred_at=T0 + index * TICK,
            recorded_at=T0 + index * TICK,
            event=event,
            metadata=Metadata(),
        )
        for index, event in enumerate(events)
    ]


@dataclass(frozen=True)
class Scenario:
    """A valid stream and what a model of the run says each result ends as."""

    events: list[RecordedEvent]
    # Per result: queued, running, passed, failed, blocked, error or cancelled.
    expected_results: dict[str, str]
    # pending, queued, running, completed, cancelled or error.
    expected_run: str


def _model_apply(status: dict[str, str], event: RunEvent) -> None:
    """What a valid event does to the model's per-result status."""
    match event:
        case TestStarted(result_id=result_id, attempt=1):
            status[result_id] = "running"
        case TestPassed() | TestFailed() | TestBlocked():
            status[event.result_id] = event.__struct_config__.tag.removeprefix("test.")
        case TestErrored(result_id=result_id):
            status[result_id] = "error"
        case _:
            pass


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A valid stream: how each test goes, interleaved, maybe cut by a cancel or a run error."""
    count = draw(st.integers(min_value=1, max_value=30))
    handed_to_queue = draw(st.booleans())
    # Each test: how far it gets (never started, still running, or an ending) and
    # whether a runner retried it (attempt 2 while it was running).
    # Half the time every test reaches an ending, so that runs complete often.
    reaches = ENDINGS if draw(st.booleans()) else ("never", "running", *ENDINGS)
    plans = draw(
        st.lists(
            st.tuples(st.sampled_from(reaches), st.booleans()),
            min_size=count,
            max_size=count,
        )
    )
    per_test: list[list[RunEvent]] = []
    for n, (reach, retried) in enumerate(plans):
        events: list[RunEvent] = []
        if reach != "never":
            events.append(started(n))
            if retried:
                events.append(started(n, attempt=2))
            if reach != "running":
                events.append(ended(n, reach))  # type: ignore[arg-type]
        per_test.append(events)
    order = draw(st.permutations([n for n, events in enumerate(per_test) for _ in events]))
    cursors = [0] * count
    merged: list[tuple[int, RunEvent]] = []
    for n in order:
        merged.append((n, per_test[n][cursors[n]]))
        cursors[n] += 1
    stop = draw(
        st.none()
        | st.tuples(
            st.integers(min_value=0, max_value=len(merged)),
            st.sampled_from(("cancelled", "error")),
        )
    )

    stream: list[RunEvent] = [created(count)]
    if handed_to_queue:
        stream.append(RunQueued())
    status = {rid(n): "queued" for n in range(count)}
    cut = len(merged) if stop is None else stop[0]
    for _, event in merged[:cut]:
        stream.append(event)
        _model_apply(status, event)

    if stop is None:
        if all(s not in {"queued", "running"} for s in status.values()):
            stream.append(RunCompleted())
            run = "completed"
        elif any(s != "queued" for s in status.values()):
            run = "running"
        else:
            run = "queued" if handed_to_queue else "pending"
    else:
        run = stop[1]
        running = {n for n in range(count) if status[rid(n)] == "running"}
        for result_id, s in status.items():
            if s == "queued":
                status[result_id] = "cancelled"
        stream.append(
            RunCancelled(reason="stop") if run == "cancelled" else RunErrored(message="x")
        )
        # Tests already running finish; nothing else starts.
        for n, event in merged[cut:]:
            if n in running:
                stream.append(event)
                _model_apply(status, event)
    return Scenario(events=recorded(stream), expected_results=status, expected_run=run)


_test_events = st.builds(
    lambda kind, n, attempt: started(n, attempt) if kind == "started" else ended(n, kind),
    st.sampled_from(("started", *ENDINGS)),
    # One id past the run's tests names no result of the run.
    st.integers(min_value=0, max_value=8),
    st.integers(min_value=1, max_value=3),
)
_run_events = st.sampled_from(
    (RunQueued(), RunCompleted(), RunCancelled(reason="stop"), RunErrored(message="x"))
)


@st.composite
def arbitrary_test_streams(draw: st.DrawFn) -> list[RecordedEvent]:
    """run.created, then test events in any order, for any result (or none)."""
    count = draw(st.integers(min_value=1, max_value=8))
    events = draw(st.lists(_test_events, max_size=60))
    return recorded([created(count), *events])


@st.composite
def arbitrary_streams(draw: st.DrawFn) -> list[RecordedEvent]:
    """run.created, then test and run events in any order."""
    count = draw(st.integers(min_value=1, max_value=8))
    events = draw(st.lists(_test_events | _run_events, max_size=60))
    return recorded([created(count), *events])


STATUS = {
    Pending: "pending",
    Queued: "queued",
    Running: "running",
    Completed: "completed",
    Errored: "error",
    Cancelled: "cancelled",
}


def recount(results: dict[str, WorkflowTestResult]) -> Counts:
    """The counts that the results' own lifecycles and verdicts add up to."""
    lifecycles = Counter(STATUS[type(result.lifecycle)] for result in results.values())
    verdicts = Counter(
        result.verdict for result in results.values() if isinstance(result.lifecycle, Completed)
    )
    return make_counts(LifecycleCounts(**lifecycles), OutcomeCounts(**verdicts))  # type: ignore[arg-type]


def check_counts(view: RunView) -> None:
    """The counts' invariants, and that they agree with the results."""
    run = view.run
    lifecycle, outcome, flat = run.counts.lifecycle_counts, run.counts.outcome, run.counts
    buckets = [
        lifecycle.pending,
        lifecycle.queued,
        lifecycle.running,
        lifecycle.completed,
        lifecycle.error,
        lifecycle.cancelled,
    ]
    assert all(bucket >= 0 for bucket in buckets), buckets
    assert run.total_tests == sum(buckets)
    assert lifecycle.completed == outcome.passed + outcome.failed + outcome.blocked
    nested = (
        lifecycle.pending + lifecycle.queued,
        lifecycle.running,
        outcome.passed,
        outcome.failed,
        outcome.blocked,
        lifecycle.error,
        lifecycle.cancelled,
    )
    assert nested == (
        flat.queued,
        flat.running,
        flat.passed,
        flat.failed,
        flat.blocked,
        flat.error,
        flat.cancelled,
    )
    assert run.total_tests == len(view.results)
    # A result has a verdict exactly when it completed.
    mismatched = [
        result.id
        for result in view.results.values()
        if (result.verdict is not None) != isinstance(result.lifecycle, Completed)
    ]
    assert not mismatched, mismatched
    assert recount(view.results) == run.counts


def fold_checking(events: list[RecordedEvent]) -> RunView:
    """Fold event by event, checking the counts after every event."""
    state: RunView | None = None
    for event in events:
        state = evolve(state, event)
        check_counts(state)
        assert event.version == state.version
    assert state is not None
    return state


# (a) and (b): the counts, after every event of a valid stream


@SETTINGS
@given(scenarios())
def test_counts_hold_after_every_event_of_a_valid_stream(scenario: Scenario) -> None:
    """Buckets sum to the tests, outcomes to the completed, and match a recount, at every step."""
    fold_checking(scenario.events)


@SETTINGS
@given(scenarios())
def test_valid_stream_ends_as_the_model_says(scenario: Scenario) -> None:
    """Each result and the run end in the state that a model of the stream predicts."""
    view = fold_checking(scenario.events)

    statuses = {
        result.id: result.verdict if result.verdict is not None else STATUS[type(result.lifecycle)]
        for result in view.results.values()
    }
    assert scenario.expected_results == statuses
    assert scenario.expected_run == STATUS[type(view.run.lifecycle)]


@SETTINGS
@given(scenarios())
def test_valid_stream_timing(scenario: Scenario) -> None:
    """Run and tests started at their first start; a finished one's duration is its span."""
    view = fold_checking(scenario.events)

    first_start = next(
        (e.occurred_at for e in scenario.events if isinstance(e.event, TestStarted)), None
    )
    timing = view.run.timing
    assert first_start == timing.started_at
    end = next(
        (
            e.occurred_at
            for e in scenario.events
            if isinstance(e.event, RunCompleted | RunCancelled | RunErrored)
        ),
        None,
    )
    assert end == timing.completed_at
    expected_duration = (
        round((end - first_start).total_seconds() * 1000)
        if end is not None and first_start is not None
        else None
    )
    assert expected_duration == timing.duration_ms
    first_starts: dict[str, datetime] = {}
    for e in scenario.events:
        if isinstance(e.event, TestStarted):
            first_starts.setdefault(e.event.result_id, e.occurred_at)
    # A retry does not move a test's start.
    assert first_starts == {
        result.id: result.timing.started_at
        for result in view.results.values()
        if result.timing.started_at is not None
    }
    for result in view.results.values():
        t = result.timing
        if t.started_at is not None and t.completed_at is not None:
            expected = round((t.completed_at - t.started_at).total_seconds() * 1000)
            assert expected == t.duration_ms


# (c): determinism


@SETTINGS
@given(scenarios(), st.data())
def test_fold_is_deterministic_and_equals_evolve(scenario: Scenario, data: st.DataObject) -> None:
    """Folding twice gives equal states; fold equals evolve event by event, and resumes."""
    events = scenario.events

    once, twice = fold(events), fold(events)
    assert once == twice

    state: RunView | None = None
    for event in events:
        state = evolve(state, event)
    assert once == state

    split = data.draw(st.integers(min_value=1, max_value=len(events)), label="split")
    assert once == fold(events[split:], fold(events[:split]))


@SETTINGS
@given(st.one_of(scenarios().map(lambda s: s.events), arbitrary_streams()), st.data())
def test_step_needs_only_the_results_it_names(
    events: list[RecordedEvent], data: st.DataObject
) -> None:
    """Stepping a batch with only `results_needed(batch)` loaded gives what the full fold gives.

    The inline projection loads just those results before it steps a batch.
    """
    split = data.draw(st.integers(min_value=1, max_value=len(events)), label="split")
    before, batch = fold(events[:split]), events[split:]
    assert before is not None
    needed = results_needed(batch)
    results = {
        result_id: result
        for result_id, result in before.results.items()
        if needed is None or result_id in needed
    }
    run = before.run
    for event in batch:
        run, touched = step(run, results, event.event, event.occurred_at)
        for result in touched:
            results[result.id] = result

    full = fold(batch, before)
    assert full is not None
    assert full.run == run
    assert {result_id: full.results[result_id] for result_id in results} == results


# (d): arbitrary streams


@SETTINGS
@given(arbitrary_test_streams())
def test_counts_hold_for_any_test_events(events: list[RecordedEvent]) -> None:
    """Whatever test events follow run.created, in any order, the counts stay consistent."""
    fold_checking(events)


@SETTINGS
@given(arbitrary_streams())
def test_counts_hold_for_any_events(events: list[RecordedEvent]) -> None:
    """Test and run events in any order after run.created keep the counts consistent."""
    fold_checking(events)


@SETTINGS
@given(arbitrary_streams())
def test_a_terminal_run_stays_terminal(events: list[RecordedEvent]) -> None:
    """Once a run has completed, errored or been cancelled, no event reopens or re-ends it."""
    state: RunView | None = None
    final = None
    for event in events:
        state = evolve(state, event)
        timing = state.run.timing
        now = (state.run.lifecycle, timing.started_at, timing.completed_at, timing.duration_ms)
        if final is not None:
            assert final == now
        elif isinstance(state.run.lifecycle, Completed | Errored | Cancelled):
            final = now


@SETTINGS
@given(arbitrary_streams())
def test_a_terminal_result_never_changes(events: list[RecordedEvent]) -> None:
    """A result that completed, errored or was cancelled is never changed by a later event."""
    state: RunView | None = None
    finished: dict[str, WorkflowTestResult] = {}
    for event in events:
        state = evolve(state, event)
        for result_id, result in finished.items():
            assert result == state.results[result_id]
        for result in state.results.values():
            if isinstance(result.lifecycle, Completed | Errored | Cancelled):
                finished.setdefault(result.id, result)
