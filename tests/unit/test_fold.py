"""Examples of how the fold turns a run's stream into its resource and its results."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from events.types import (
    AssertionFailure,
    AssertionResult,
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
    Trigger,
)
from projections.fold import FoldError, RunView, evolve, fold
from projections.resources import (
    BlockTarget,
    Cancelled,
    Completed,
    Counts,
    Errored,
    Freshness,
    LifecycleCounts,
    OutcomeCounts,
    Pending,
    Queued,
    Running,
    Timing,
    VerdictSummary,
    WorkflowRef,
    make_counts,
)

RUN_ID = "wftestrun_fold"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# Odd on purpose: durations then differ from a whole number of seconds.
TICK = timedelta(milliseconds=1250)


def at(index: int) -> datetime:
    """When the event at `index` (0 = run.created) of a stream built by `stream` occurred."""
    return T0 + index * TICK


def snapshot(n: int, *, block_id: str | None = None) -> TestSnapshot:
    """The snapshot of test number `n`, with fingerprints that name it."""
    return TestSnapshot(
        result_id=f"wfnodetestrun_{n}",
        test_id=f"wfnodetest_{n}",
        test_name=f"test {n}",
        block_id=block_id or f"blk_{n}",
        block_type="function",
        block_config={"entrypoint": "tests.fixtures:echo"},
        handle_inputs={"input-json-0": {"type": "json", "data": {"n": n}}},
        assertion={"target": {"output_handle_id": "output-json-0"}},
        handle_inputs_fingerprint=f"inputs-{n}",
        block_config_fingerprint=f"config-{n}",
        validity_fingerprint=f"validity-{n}",
        execution_fingerprint=f"execution-{n}",
    )


def created(count: int = 3, *, scope: Scope | None = None) -> RunCreated:
    """A run.created of `count` tests (wfnodetestrun_0, wfnodetestrun_1, ...)."""
    return created_of([snapshot(n) for n in range(count)], scope=scope)


def created_of(tests: list[TestSnapshot], *, scope: Scope | None = None) -> RunCreated:
    """A run.created of these tests."""
    return RunCreated(
        run_id=RUN_ID,
        organisation_id="org_1",
        workflow_id="wf_1",
        workflow_version_id="wfv_7",
        workflow_draft_fingerprint="draft-fp",
        trigger=Trigger(type="api"),
        scope=scope or Scope(type="workflow"),
        tests=tests,
        validity_fingerprint="run-validity-fp",
        input_fingerprint="run-input-fp",
        engine_fingerprint="run-engine-fp",
    )


def stream(*events: RunEvent) -> list[RecordedEvent]:
    """The events as recorded: versions 1, 2, ... occurring at at(0), at(1), ..."""
    return [
        RecordedEvent(
            stream_id=f"run-{RUN_ID}",
            version=index + 1,
            global_position=index + 1,
            transaction_id=1,
            event_id=uuid.uuid4(),
            schema_version=1,
            occurred_at=at(index),
            recorded_at=at(index),
            event=event,
            metadata=Metadata(),
        )
        for index, event in enumerate(events)
    ]


def folded(*events: RunEvent) -> RunView:
    """The state after folding these events."""
    view = fold(stream(*events))
    assert view is not None
    return view


def rid(n: int) -> str:
    """The result id of test number `n`."""
    return f"wfnodetestrun_{n}"


def started(n: int, attempt: int = 1) -> TestStarted:
    """Test number `n` started."""
    return TestStarted(result_id=rid(n), test_id=f"wfnodetest_{n}", attempt=attempt)


def passed(n: int, **fields: Any) -> TestPassed:
    """Test number `n` passed."""
    return TestPassed(result_id=rid(n), test_id=f"wfnodetest_{n}", **fields)


def failed(n: int, **fields: Any) -> TestFailed:
    """Test number `n` failed."""
    return TestFailed(result_id=rid(n), test_id=f"wfnodetest_{n}", **fields)


def blocked(n: int) -> TestBlocked:
    """Test number `n` was blocked."""
    return TestBlocked(result_id=rid(n), test_id=f"wfnodetest_{n}")


def errored(n: int, message: str = "lease lost 3 times") -> TestErrored:
    """Test number `n` errored."""
    return TestErrored(
        result_id=rid(n), test_id=f"wfnodetest_{n}", message=message, details={"attempts": 3}
    )


def counts(
    *,
    pending: int = 0,
    queued: int = 0,
    running: int = 0,
    completed: int = 0,
    error: int = 0,
    cancelled: int = 0,
    passed: int = 0,
    failed: int = 0,
    blocked: int = 0,
) -> Counts:
    """The counts with these buckets (every other bucket 0)."""
    return make_counts(
        LifecycleCounts(
            pending=pending,
            queued=queued,
            running=running,
            completed=completed,
            error=error,
            cancelled=cancelled,
        ),
        OutcomeCounts(passed=passed, failed=failed, blocked=blocked),
    )


# Creation


def test_created_run_is_pending_with_every_test_queued() -> None:
    """After run.created the run is pending and each of its tests is queued."""
    view = folded(created(3))

    tests = 3
    assert Pending() == view.run.lifecycle
    assert tests == view.run.total_tests
    assert counts(queued=tests) == view.run.counts
    assert tests == view.run.counts.queued
    assert {rid(0), rid(1), rid(2)} == set(view.results)
    assert [Queued(), Queued(), Queued()] == [r.lifecycle for r in view.results.values()]
    assert [(rid(n), None) for n in range(tests)] == [
        (r.id, r.verdict) for r in view.results.values()
    ]
    assert view.version == 1


def test_created_run_has_only_a_creation_time() -> None:
    """A new run and its results were created when run.created occurred, and nothing more."""
    view = folded(created(2))

    assert Timing(created_at=at(0)) == view.run.timing
    assert [Timing(created_at=at(0))] * 2 == [r.timing for r in view.results.values()]


def test_created_run_names_its_workflow_and_trigger() -> None:
    """The run names its workflow in both forms, its draft version and its trigger."""
    view = folded(created(1))

    workflow = WorkflowRef(workflow_id="wf_1", version_id="wfv_7")
    assert view.run.id == RUN_ID
    assert workflow.workflow_id == view.run.workflow_id
    assert workflow.version_id == view.run.workflow_version_id
    assert workflow == view.run.workflow
    assert Trigger(type="api") == view.run.trigger


def test_run_queued_moves_a_pending_run_to_queued() -> None:
    """run.queued moves a pending run to queued; its tests stay queued."""
    view = folded(created(2), RunQueued())

    assert Queued() == view.run.lifecycle
    assert counts(queued=2) == view.run.counts


def test_a_stream_must_start_with_run_created() -> None:
    """Folding a stream whose first event is not run.created is an error."""
    with pytest.raises(FoldError, match=r"run\.created"):
        fold(stream(started(0)))


# Scope


def test_scope_single_sets_test_id_and_target_block() -> None:
    """A run scoped to a single test names that test and targets its block."""
    tests = [snapshot(0, block_id="blk_invoice")]
    scope = Scope(type="single", test_id="wfnodetest_0")

    view = folded(created_of(tests, scope=scope))

    assert scope.test_id == view.run.test_id
    assert BlockTarget(block_id="blk_invoice") == view.run.target


def test_scope_block_sets_target_but_no_test_id() -> None:
    """A run scoped to a block targets that block and names no single test."""
    tests = [snapshot(0, block_id="blk_invoice"), snapshot(1, block_id="blk_invoice")]
    scope = Scope(type="block", block_id="blk_invoice")

    view = folded(created_of(tests, scope=scope))

    assert view.run.test_id is None
    assert BlockTarget(block_id="blk_invoice") == view.run.target


def test_scope_workflow_sets_neither_test_id_nor_target() -> None:
    """A run of the whole workflow names no single test and targets no block."""
    view = folded(created(3, scope=Scope(type="workflow")))

    assert view.run.test_id is None
    assert view.run.target is None


# Freshness baseline and what the results carry from their snapshot


def test_freshness_baseline_comes_from_run_created() -> None:
    """The run's freshness baseline holds run.created's fingerprints and the run's own id."""
    view = folded(created(2))

    expected = Freshness(
        status="fresh",
        validity_fingerprint="run-validity-fp",
        input_fingerprint="run-input-fp",
        baseline_run_id=RUN_ID,
    )
    assert expected == view.run.freshness


def test_results_carry_their_snapshot() -> None:
    """Each result holds its snapshot's ids, handle inputs and fingerprints."""
    tests = [snapshot(0), snapshot(1, block_id="blk_other")]

    view = folded(created_of(tests))

    for test in tests:
        result = view.results[test.result_id]
        assert (
            test.result_id,
            RUN_ID,
            test.test_id,
            "wf_1",
            test.block_id,
            test.block_type,
        ) == (
            result.id,
            result.workflow_test_run_id,
            result.test_id,
            result.workflow_id,
            result.block_id,
            result.block_type,
        )
        assert test.handle_inputs == result.handle_inputs
        assert (
            test.handle_inputs_fingerprint,
            test.block_config_fingerprint,
            "draft-fp",
            test.execution_fingerprint,
        ) == (
            result.handle_inputs_fingerprint,
            result.block_config_fingerprint,
            result.workflow_draft_fingerprint,
            result.execution_fingerprint,
        )


# Starting


def test_first_start_moves_run_to_running_and_sets_started_at() -> None:
    """The first test.started makes the run running, started when that test started."""
    view = folded(created(3), started(1))

    assert Running() == view.run.lifecycle
    assert at(1) == view.run.timing.started_at
    assert view.run.timing.completed_at is None
    assert counts(queued=2, running=1) == view.run.counts
    assert Running() == view.results[rid(1)].lifecycle
    assert at(1) == view.results[rid(1)].timing.started_at
    assert Queued() == view.results[rid(0)].lifecycle


def test_first_start_moves_a_queued_run_to_running() -> None:
    """A run that was handed to the queue is running once a test starts."""
    view = folded(created(2), RunQueued(), started(0))

    assert Running() == view.run.lifecycle
    assert at(2) == view.run.timing.started_at


def test_later_starts_keep_the_run_started_at() -> None:
    """The run started when its first test started, not when later ones did."""
    view = folded(created(3), started(0), started(1), started(2))

    assert at(1) == view.run.timing.started_at
    assert at(3) == view.results[rid(2)].timing.started_at
    assert counts(running=3) == view.run.counts


def test_restart_of_a_running_test_changes_nothing() -> None:
    """A second attempt of a running test leaves the run and the result as they were."""
    before = folded(created(2), started(0))
    after = folded(created(2), started(0), started(0, attempt=2))

    assert before.run == after.run
    assert before.results == after.results


# Outcomes


def test_outcomes_complete_tests_into_their_outcome_buckets() -> None:
    """Passed, failed and blocked tests are completed and counted under their verdicts."""
    view = folded(
        created(4),
        started(0),
        started(1),
        started(2),
        passed(0),
        failed(1),
        blocked(2),
    )

    assert counts(queued=1, completed=3, passed=1, failed=1, blocked=1) == view.run.counts
    assert Running() == view.run.lifecycle
    assert [Completed()] * 3 == [view.results[rid(n)].lifecycle for n in range(3)]
    verdicts = {rid(0): "passed", rid(1): "failed", rid(2): "blocked", rid(3): None}
    assert verdicts == {result.id: result.verdict for result in view.results.values()}


def test_outcome_sets_the_test_timing() -> None:
    """A test's timing runs from its start to its outcome."""
    view = folded(created(1), started(0), passed(0))

    expected = Timing(created_at=at(0), started_at=at(1), completed_at=at(2), duration_ms=1250)
    assert expected == view.results[rid(0)].timing


def test_outcome_carries_assertion_warnings_and_summary() -> None:
    """A failed outcome keeps its assertion result and warnings, and tallies them."""
    assertion = AssertionResult(
        assertion_id="assert_1",
        condition_kind="equals",
        outcome="failed",
        actual_value=1,
        expected_value=2,
        failure=AssertionFailure(code="not_equal", message="1 != 2"),
    )

    view = folded(
        created(1),
        started(0),
        failed(0, assertion_result=assertion, warnings=["slow block"]),
    )

    result = view.results[rid(0)]
    assert assertion == result.assertion_result
    assert result.warnings == ["slow block"]
    expected = VerdictSummary(passed=False, assertions_failed=1, failed_assertion_ids=["assert_1"])
    assert expected == result.verdict_summary


def test_passed_verdict_summary() -> None:
    """A passed outcome's summary says it passed with one passing assertion."""
    view = folded(created(1), started(0), passed(0))

    expected = VerdictSummary(passed=True, assertions_passed=1)
    assert expected == view.results[rid(0)].verdict_summary


def test_handle_outputs_are_rendered_in_typed_form() -> None:
    """Each output handle's value is shown as {"type": "json", "data": value}."""
    outputs = {"output-json-0": {"vendor": {"name": "ACME"}}, "output-json-1": [1, 2], "n": None}

    view = folded(created(1), started(0), passed(0, handle_outputs=outputs))

    expected = {
        "output-json-0": {"type": "json", "data": {"vendor": {"name": "ACME"}}},
        "output-json-1": {"type": "json", "data": [1, 2]},
        "n": {"type": "json", "data": None},
    }
    assert expected == view.results[rid(0)].handle_outputs


def test_no_handle_outputs_stay_none() -> None:
    """An outcome without outputs leaves the result's handle_outputs null."""
    view = folded(created(1), started(0), blocked(0))

    assert view.results[rid(0)].handle_outputs is None


def test_errored_test_goes_to_the_error_bucket() -> None:
    """test.errored ends the test in the error bucket, with its message and no verdict."""
    view = folded(created(2), started(0), errored(0, "lease lost"))

    result = view.results[rid(0)]
    assert Errored(message="lease lost", details={"attempts": 3}) == result.lifecycle
    assert result.verdict is None
    assert at(2) == result.timing.completed_at
    assert counts(queued=1, error=1) == view.run.counts


def test_second_outcome_is_ignored() -> None:
    """A second outcome for a finished test changes neither the test nor the counts."""
    first = folded(created(2), started(0), passed(0))

    for second in (failed(0), blocked(0), passed(0), errored(0), started(0, attempt=2)):
        again = folded(created(2), started(0), passed(0), second)
        assert first.run == again.run
        assert first.results == again.results


def test_outcome_for_an_unknown_result_changes_nothing() -> None:
    """An outcome naming a result that is not in the run changes nothing."""
    before = folded(created(1), started(0))
    after = folded(created(1), started(0), passed(7))

    assert before.run == after.run
    assert before.results == after.results


# Completion


def test_run_completed_ends_the_run_with_its_duration() -> None:
    """run.completed completes the run; its duration runs from the first start to the end."""
    view = folded(created(2), started(0), started(1), passed(0), failed(1), RunCompleted())

    assert Completed() == view.run.lifecycle
    expected = Timing(created_at=at(0), started_at=at(1), completed_at=at(5), duration_ms=4 * 1250)
    assert expected == view.run.timing
    assert counts(completed=2, passed=1, failed=1) == view.run.counts
    assert view.version == 6


def test_events_after_a_completed_run_do_not_reopen_it() -> None:
    """A cancel or an error after completion leaves the completed run as it was."""
    done = folded(created(1), started(0), passed(0), RunCompleted())

    for late in (RunCancelled(reason="late"), RunErrored(message="late"), RunCompleted()):
        again = folded(created(1), started(0), passed(0), RunCompleted(), late)
        assert done.run == again.run
        assert done.results == again.results


def test_a_cancel_after_the_run_ended_cancels_no_test() -> None:
    """A cancel or an error after the run ended changes no test, even one still waiting."""
    # The commands never complete a run with a waiting test; the fold does not trust that.
    done = folded(created(2), started(0), passed(0), RunCompleted())

    for late in (RunCancelled(reason="late"), RunErrored(message="late")):
        again = folded(created(2), started(0), passed(0), RunCompleted(), late)
        assert Queued() == again.results[rid(1)].lifecycle
        assert done.results == again.results
        assert done.run == again.run


# Cancellation


def test_cancel_cancels_waiting_tests_and_keeps_running_ones() -> None:
    """run.cancelled cancels every test not yet started; a running test keeps running."""
    view = folded(created(3), started(0), RunCancelled(reason="user asked"))

    assert Cancelled(reason="user asked") == view.run.lifecycle
    assert counts(running=1, cancelled=2) == view.run.counts
    assert Running() == view.results[rid(0)].lifecycle
    assert [Cancelled(reason="user asked")] * 2 == [view.results[rid(n)].lifecycle for n in (1, 2)]
    assert Timing(created_at=at(0), completed_at=at(2)) == view.results[rid(1)].timing
    expected = Timing(created_at=at(0), started_at=at(1), completed_at=at(2), duration_ms=1250)
    assert expected == view.run.timing


def test_outcome_after_cancel_is_counted_but_run_stays_cancelled() -> None:
    """A running test's outcome after the cancel is counted; the run stays cancelled."""
    cancelled = folded(created(3), started(0), RunCancelled(reason="user asked"))
    view = folded(created(3), started(0), RunCancelled(reason="user asked"), failed(0))

    assert Cancelled(reason="user asked") == view.run.lifecycle
    assert cancelled.run.timing == view.run.timing
    assert counts(completed=1, failed=1, cancelled=2) == view.run.counts
    assert view.results[rid(0)].verdict == "failed"


def test_completion_after_cancel_does_not_reopen_the_run() -> None:
    """run.completed after a cancel (every test now terminal) leaves the run cancelled."""
    view = folded(created(2), started(0), RunCancelled(reason="stop"), passed(0), RunCompleted())

    assert Cancelled(reason="stop") == view.run.lifecycle
    assert at(2) == view.run.timing.completed_at


def test_start_after_cancel_changes_nothing() -> None:
    """A test cancelled with its run cannot start afterwards."""
    before = folded(created(2), RunCancelled())
    after = folded(created(2), RunCancelled(), started(1))

    assert before.run == after.run
    assert before.results == after.results
    assert counts(cancelled=2) == after.run.counts


def test_cancel_before_any_start_has_no_duration() -> None:
    """A run cancelled before any test started has a completion time but no duration."""
    view = folded(created(2), RunCancelled(reason="never mind"))

    assert Timing(created_at=at(0), completed_at=at(1)) == view.run.timing


def test_second_cancel_changes_nothing() -> None:
    """Cancelling a cancelled run keeps the first cancel's reason and time."""
    first = folded(created(2), started(0), RunCancelled(reason="first"))
    again = folded(created(2), started(0), RunCancelled(reason="first"), RunCancelled(reason="x"))

    assert first.run == again.run
    assert first.results == again.results


# Run errors


def test_run_errored_cancels_waiting_tests_with_a_reason() -> None:
    """run.errored ends the run in error; tests not yet started are cancelled with a reason."""
    view = folded(
        created(3),
        started(0),
        RunErrored(message="runner pool gone", details={"code": "no_runner"}),
    )

    assert Errored(message="runner pool gone", details={"code": "no_runner"}) == view.run.lifecycle
    assert at(2) == view.run.timing.completed_at
    assert counts(running=1, cancelled=2) == view.run.counts
    assert Running() == view.results[rid(0)].lifecycle
    assert [Cancelled(reason="run errored")] * 2 == [view.results[rid(n)].lifecycle for n in (1, 2)]


def test_outcome_after_run_errored_is_counted_but_run_stays_in_error() -> None:
    """A running test's outcome after run.errored is counted; the run stays in error."""
    view = folded(created(2), started(0), RunErrored(message="boom"), passed(0))

    assert Errored(message="boom") == view.run.lifecycle
    assert counts(completed=1, passed=1, cancelled=1) == view.run.counts


# fold and evolve


def test_fold_equals_evolving_one_event_at_a_time() -> None:
    """fold gives the state that evolve reaches event by event."""
    events = stream(created(3), started(0), started(1), passed(0), RunCancelled(), errored(1))

    state: RunView | None = None
    for event in events:
        state = evolve(state, event)

    assert state == fold(events)


def test_fold_continues_from_a_state() -> None:
    """Folding the rest of a stream onto the state of its start equals folding it whole."""
    events = stream(created(2), started(0), passed(0), started(1), blocked(1), RunCompleted())

    assert fold(events) == fold(events[3:], fold(events[:3]))


def test_a_start_after_the_run_ended_changes_nothing() -> None:
    """test.started after run.completed cannot apply: no start after the end, no running test."""
    view = folded(created(1), RunCompleted(), started(0))
    assert "completed" == view.run.lifecycle.__struct_config__.tag
    assert view.run.timing.started_at is None
    assert "queued" == view.results[rid(0)].lifecycle.__struct_config__.tag
    assert counts(queued=1) == view.run.counts
