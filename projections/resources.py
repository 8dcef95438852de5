"""The rendered read-model resources: a test run and its per-test results.

These are the API's WorkflowTestRun and WorkflowTestResult shapes. The fold
builds them, the read-model rows store them, the handlers serve them. Where the
reference pages and the schema disagree both forms are emitted (`workflow` and
`workflow_id`; nested and flat `counts`), and so are the names of both SDK
releases (`test_id` and `eval_id`, `total_tests` and `total_evals`, ...).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

from events.types import AssertionResult, Trigger


class _Lifecycle(msgspec.Struct, frozen=True, kw_only=True, tag_field="status"):
    pass


class Pending(_Lifecycle, tag="pending", kw_only=True, frozen=True):
    """Created; no test has started."""


class Queued(_Lifecycle, tag="queued", kw_only=True, frozen=True):
    """Waiting for a runner."""


class Running(_Lifecycle, tag="running", kw_only=True, frozen=True):
    """At least one test started; not every test is terminal."""


class Completed(_Lifecycle, tag="completed", kw_only=True, frozen=True):
    """Every test reached a terminal state."""


class Errored(_Lifecycle, tag="error", kw_only=True, frozen=True):
    """Could not proceed."""

    message: str | None = "(no message)"
    details: dict[str, Any] | None = None


class Cancelled(_Lifecycle, tag="cancelled", kw_only=True, frozen=True):
    """Cancelled before it finished."""

    reason: str | None = None


Lifecycle = Pending | Queued | Running | Completed | Errored | Cancelled

TERMINAL = (Completed, Errored, Cancelled)


class Timing(msgspec.Struct, frozen=True, kw_only=True):
    """When it was created, started and completed; `duration_ms` = completed - started."""

    created_at: datetime
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None


class WorkflowRef(msgspec.Struct, frozen=True, kw_only=True):
    """The workflow and the draft version a run tested."""

    workflow_id: str
    version_id: str


class BlockTarget(msgspec.Struct, frozen=True, kw_only=True):
    """The block a test (or a run scoped to one test or block) targets."""

    type: Literal["block"] = "block"
    block_id: str


class LifecycleCounts(msgspec.Struct, frozen=True, kw_only=True):
    """How many tests are in each lifecycle state; they sum to `total_tests`."""

    pending: int = 0
    queued: int = 0
    running: int = 0
    completed: int = 0
    error: int = 0
    cancelled: int = 0


class OutcomeCounts(msgspec.Struct, frozen=True, kw_only=True):
    """How the completed tests ended; they sum to `lifecycle_counts.completed`."""

    passed: int = 0
    failed: int = 0
    blocked: int = 0


class Counts(msgspec.Struct, frozen=True, kw_only=True):
    """Both forms of the counts: nested (the schema) and flat (the reference page)."""

    lifecycle_counts: LifecycleCounts
    outcome: OutcomeCounts
    queued: int
    running: int
    passed: int
    failed: int
    blocked: int
    error: int
    cancelled: int


def make_counts(lifecycle: LifecycleCounts, outcome: OutcomeCounts) -> Counts:
    """Render the counts; the flat form is derived, never stored apart."""
    return Counts(
        lifecycle_counts=lifecycle,
        outcome=outcome,
        queued=lifecycle.pending + lifecycle.queued,
        running=lifecycle.running,
        passed=outcome.passed,
        failed=outcome.failed,
        blocked=outcome.blocked,
        error=lifecycle.error,
        cancelled=lifecycle.cancelled,
    )


class Freshness(msgspec.Struct, frozen=True, kw_only=True):
    """Would the current draft test the same thing? Computed at read time."""

    status: Literal["fresh", "stale", "unknown"]
    reasons: list[str] = msgspec.field(default_factory=list)
    validity_fingerprint: str | None = None
    input_fingerprint: str | None = None
    baseline_run_id: str | None = None


def stale_reasons(engine_changed: bool, inputs_changed: bool, validity_changed: bool) -> list[str]:
    """Freshness `reasons`, in the API's order, for what changed since the baseline."""
    return [
        reason
        for reason, changed in (
            ("engine_changed", engine_changed),
            ("inputs_changed", inputs_changed),
            ("validity_changed", validity_changed),
        )
        if changed
    ]


class WorkflowTestRun(msgspec.Struct, frozen=True, kw_only=True):
    """A run of a workflow's saved tests: lifecycle, timing and counts."""

    id: str
    workflow_id: str
    workflow_version_id: str
    workflow: WorkflowRef
    trigger: Trigger
    lifecycle: Lifecycle
    timing: Timing
    test_id: str | None = None
    # SDK 0.0.160's names of `test_id` and `total_tests`: always equal to them.
    eval_id: str | None = None
    target: BlockTarget | None = None
    total_tests: int
    total_evals: int
    counts: Counts
    freshness: Freshness | None = None


class VerdictSummary(msgspec.Struct, frozen=True, kw_only=True):
    """The assertion tally of one result."""

    passed: bool
    assertions_passed: int = 0
    assertions_failed: int = 0
    blocked_assertions: int = 0
    failed_assertion_ids: list[str] = msgspec.field(default_factory=list)


class WorkflowTestResult(msgspec.Struct, frozen=True, kw_only=True):
    """The result of one test in one run."""

    id: str
    workflow_test_run_id: str
    test_id: str
    # SDK 0.0.160's names of `workflow_test_run_id` and `test_id`: always equal to them.
    workflow_eval_run_id: str
    eval_id: str
    workflow_id: str
    block_id: str
    block_type: str
    lifecycle: Lifecycle
    timing: Timing
    verdict: Literal["passed", "failed", "blocked"] | None = None
    handle_inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    handle_outputs: dict[str, Any] | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    assertion_result: AssertionResult | None = None
    verdict_summary: VerdictSummary | None = None
    handle_inputs_fingerprint: str
    block_config_fingerprint: str
    # SDK 0.0.160's name of `block_config_fingerprint`.
    block_execution_fingerprint: str
    workflow_draft_fingerprint: str
    execution_fingerprint: str
    # Declared by the SDK; this service keeps no step artifacts and routes nothing.
    artifact: None = None
    routing_decisions: None = None
