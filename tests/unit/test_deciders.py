"""The pure deciders of a run, as given events -> when a command -> then events.

No database: the given events are folded (projections.fold) into the state a
command sees, and the decider answers the events it would append. The write
machinery (service.runs.write.decide) runs exactly these functions on the
locked current state, and appends what `decide_completion` adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from events.types import (
    AssertionResult,
    NewEvent,
    RunCancelled,
    RunCompleted,
    RunEvent,
    TestErrored,
    TestFailed,
    TestPassed,
    TestStarted,
)
from projections.fold import RunView, fold
from service.runs.commands import decide_cancel
from service.runs.outcomes import Claim, decide_outcomes, decide_starts
from service.runs.write import decide_completion
from tests.unit.test_fold import RUN_ID, created, rid, snapshot, started, stream

WORKER = "runner:host:1"


def given(*events: RunEvent) -> RunView:
    """The state a command sees after these events."""
    view = fold(stream(*events))
    assert view is not None
    return view


def then_completion(view: RunView, decided: Sequence[RunEvent]) -> list[RunEvent]:
    """The decided events, and `run.completed` when they complete the run (as `decide` does)."""
    after = fold(stream(*decided), view) if decided else view
    completed = decide_completion(after.run if after is not None else None)
    return [*decided, *([completed] if completed is not None else [])]


def claim(n: int, attempt: int = 1) -> Claim:
    return Claim(
        result_id=rid(n),
        run_id=RUN_ID,
        organisation_id="org_1",
        attempt=attempt,
        snapshot=snapshot(n),
    )


def passed(n: int) -> TestPassed:
    return TestPassed(
        result_id=rid(n),
        test_id=f"wfnodetest_{n}",
        handle_outputs={},
        assertion_result=AssertionResult(
            assertion_id="a", condition_kind="exists", outcome="passed"
        ),
        duration_ms=3,
    )


def failed(n: int) -> TestFailed:
    return TestFailed(
        result_id=rid(n),
        test_id=f"wfnodetest_{n}",
        handle_outputs={},
        assertion_result=AssertionResult(
            assertion_id="a", condition_kind="exists", outcome="failed"
        ),
        duration_ms=3,
    )


# Starting claimed tests ---------------------------------------------------------------


def test_claimed_tests_of_a_going_run_start() -> None:
    view = given(created(2))
    events, execute, drop = decide_starts(view, [claim(0), claim(1)], WORKER, 3)
    assert [
        TestStarted(result_id=rid(0), test_id="wfnodetest_0", attempt=1, worker=WORKER),
        TestStarted(result_id=rid(1), test_id="wfnodetest_1", attempt=1, worker=WORKER),
    ] == events
    assert [rid(0), rid(1)] == [c.result_id for c in execute]
    assert [] == drop


def test_a_claim_past_the_attempt_limit_errors_the_test() -> None:
    view = given(created(1), started(0, attempt=3))
    events, execute, drop = decide_starts(view, [claim(0, attempt=4)], WORKER, 3)
    assert [
        TestErrored(
            result_id=rid(0),
            test_id="wfnodetest_0",
            message="no runner finished it in 3 attempts",
            attempts=3,
        )
    ] == events
    assert ([], []) == (execute, drop)


def test_after_a_cancel_nothing_starts_and_a_lost_running_test_errors() -> None:
    view = given(created(2), started(0), RunCancelled(reason="stop"))
    events, execute, drop = decide_starts(view, [claim(0, attempt=2), claim(1)], WORKER, 3)
    assert [
        TestErrored(
            result_id=rid(0),
            test_id="wfnodetest_0",
            message="its runner was lost after the run ended",
            attempts=1,
        )
    ] == events
    assert [] == execute
    assert [rid(1)] == drop


def test_a_claim_of_a_finished_test_is_dropped() -> None:
    view = given(created(2), started(0), passed(0))
    events, execute, drop = decide_starts(view, [claim(0, attempt=2)], WORKER, 3)
    assert ([], [], [rid(0)]) == (events, execute, drop)


# Recording outcomes -------------------------------------------------------------------


def test_an_outcome_is_recorded_once_per_test() -> None:
    view = given(created(2), started(0), started(1))
    first, again = NewEvent(event=passed(0)), NewEvent(event=failed(0))
    assert [first] == decide_outcomes(view, [first, again])


def test_no_outcome_for_a_test_already_terminal() -> None:
    view = given(created(2), started(0), passed(0), started(1))
    late = NewEvent(event=failed(0))
    assert [] == decide_outcomes(view, [late])


def test_the_last_outcome_completes_the_run() -> None:
    view = given(created(2), started(0), started(1), passed(0))
    decided = [n.event for n in decide_outcomes(view, [NewEvent(event=failed(1))])]
    assert [failed(1), RunCompleted()] == then_completion(view, decided)


def test_an_outcome_that_leaves_a_test_going_does_not_complete() -> None:
    view = given(created(2), started(0), started(1))
    decided = [n.event for n in decide_outcomes(view, [NewEvent(event=passed(0))])]
    assert [passed(0)] == then_completion(view, decided)


def test_outcomes_after_a_cancel_are_recorded_but_do_not_complete_again() -> None:
    view = given(created(2), started(0), started(1), RunCancelled(reason="stop"))
    decided = [n.event for n in decide_outcomes(view, [NewEvent(event=passed(0))])]
    assert [passed(0)] == then_completion(view, decided)


# Cancelling ---------------------------------------------------------------------------


def test_cancelling_a_going_run() -> None:
    assert [RunCancelled(reason="cancelled through the API")] == decide_cancel(
        given(created(2), started(0))
    )


def test_cancelling_an_ended_run_decides_nothing() -> None:
    assert [] == decide_cancel(given(created(1), started(0), passed(0), RunCompleted()))
    assert [] == decide_cancel(given(created(1), RunCancelled(reason="stop")))
