"""The events of a test run's stream (`run-<run_id>`).

Events are data: frozen, keyword-only msgspec structs, tagged by a stable
string (`"test.passed"`) that is stored in the `type` column and never changes.
Schema evolution rules: a new field gets a default; a field never changes type
or meaning. A change of meaning is a new `schema_version` plus an upcaster in
`events.codec` that rewrites the older payloads on read.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

import msgspec
from asyncpg.pgproto.pgproto import UUID as _WireUUID


def utcnow() -> datetime:
    """The current time in UTC (events and resources never hold naive times)."""
    return datetime.now(UTC)


# RFC 4122 version 4: the version nibble (byte 6) and the variant bits (byte 8).
_VERSION_4 = bytes((b & 0x0F) | 0x40 for b in range(256))
_VARIANT = bytes((b & 0x3F) | 0x80 for b in range(256))
_IDS_PER_DRAW = 256


def _drawn_ids() -> Iterator[uuid.UUID]:
    """A fresh batch of random (version 4) UUIDs, from one read of the OS's CSPRNG."""
    data = bytearray(os.urandom(16 * _IDS_PER_DRAW))
    data[6::16] = data[6::16].translate(_VERSION_4)
    data[8::16] = data[8::16].translate(_VARIANT)
    raw = bytes(data)
    return iter([_WireUUID(raw[at : at + 16]) for at in range(0, len(raw), 16)])


class _EventIds:
    """Random (version 4) event ids, as `uuid.uuid4()` makes them, far more cheaply.

    `uuid4()` costs a system call and a pure-Python `UUID.__init__` per id:
    more than encoding the event. Here one `os.urandom` call
    draws 256 ids, each built by asyncpg's C `UUID` (the subclass of
    `uuid.UUID` it decodes stored ids into). Handing one out is a single
    `next()` on a list iterator, atomic under the GIL, so threads never share
    an id; a forked child drops the parent's undrawn ids.
    """

    def __init__(self) -> None:
        self._ids: Iterator[uuid.UUID] = iter(())
        os.register_at_fork(after_in_child=self._forget)

    def __call__(self) -> uuid.UUID:
        found = next(self._ids, None)
        if found is None:
            self._ids = _drawn_ids()
            found = next(self._ids)
        return found

    def _forget(self) -> None:
        self._ids = iter(())


new_event_id = _EventIds()


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Base of every event: the tag is the stable type name."""

    schema_version: ClassVar[int] = 1
    __test__: ClassVar[bool] = False  # names like TestStarted are not pytest classes


class Metadata(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, gc=False):
    """Who and what caused an event. `actor` is an API key's id, never the key."""

    request_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    actor: str | None = None


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """What started a run."""

    type: Literal["manual", "api", "schedule", "webhook", "email", "custom", "restart"] = "api"


class Scope(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which saved tests a run selected."""

    type: Literal["workflow", "single", "block"]
    test_id: str | None = None
    block_id: str | None = None


class TestSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one test of a run tests, frozen when the run was created."""

    __test__: ClassVar[bool] = False

    result_id: str
    test_id: str
    test_name: str | None = None
    block_id: str
    block_type: str
    block_config: dict[str, Any]
    handle_inputs: dict[str, Any]
    assertion: dict[str, Any]
    handle_inputs_fingerprint: str
    block_config_fingerprint: str
    validity_fingerprint: str
    execution_fingerprint: str


class AssertionFailure(msgspec.Struct, frozen=True, kw_only=True):
    """Why an assertion did not pass: a stable code, a message, and context."""

    code: str
    message: str
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class AssertionResult(msgspec.Struct, frozen=True, kw_only=True):
    """The evaluation of a test's assertion against the block's outputs."""

    assertion_id: str
    condition_kind: str
    outcome: Literal["passed", "failed", "blocked"]
    actual_value: Any = None
    expected_value: Any = None
    score: float | None = None
    threshold: float | None = None
    metric_kind: str | None = None
    assertion_label: str | None = None
    failure: AssertionFailure | None = None


class RunCreated(Event, tag="run.created", kw_only=True, frozen=True):
    """A run was accepted: the snapshot of every test it will execute."""

    run_id: str
    organisation_id: str
    workflow_id: str
    workflow_version_id: str
    workflow_draft_fingerprint: str
    trigger: Trigger = Trigger()
    scope: Scope
    tests: list[TestSnapshot]
    validity_fingerprint: str
    input_fingerprint: str
    engine_fingerprint: str
    # The workflow's revision when the tests were snapshotted (added later: 0 = unknown).
    workflow_revision: int = 0


class RunQueued(Event, tag="run.queued", kw_only=True, frozen=True):
    """The run's tests were handed to the work queue."""


class TestStarted(Event, tag="test.started", kw_only=True, frozen=True):
    """A runner claimed a test and began an attempt.

    Schema version 2 names the runner `worker`; version 1 called it `runner`
    (see the upcaster in events/upcasters.py).
    """

    schema_version: ClassVar[int] = 2

    result_id: str
    test_id: str
    attempt: int = 1
    worker: str = ""


class _TestOutcome(Event, kw_only=True, frozen=True):
    result_id: str
    test_id: str
    handle_outputs: dict[str, Any] | None = None
    assertion_result: AssertionResult | None = None
    warnings: list[str] = msgspec.field(default_factory=list)
    duration_ms: int | None = None


class TestPassed(_TestOutcome, tag="test.passed", kw_only=True, frozen=True):
    """The test executed and its assertion held."""


class TestFailed(_TestOutcome, tag="test.failed", kw_only=True, frozen=True):
    """The test executed and its assertion did not hold."""


class TestBlocked(_TestOutcome, tag="test.blocked", kw_only=True, frozen=True):
    """The assertion could not be evaluated (the block failed, a bad path, ...)."""


class TestErrored(Event, tag="test.errored", kw_only=True, frozen=True):
    """Infrastructure failed the test, after every retry."""

    result_id: str
    test_id: str
    message: str
    attempts: int = 1
    details: dict[str, Any] | None = None


class RunCompleted(Event, tag="run.completed", kw_only=True, frozen=True):
    """Every test of the run reached a terminal state."""


class RunCancelled(Event, tag="run.cancelled", kw_only=True, frozen=True):
    """The run was cancelled: no further test starts."""

    reason: str | None = None


class RunErrored(Event, tag="run.errored", kw_only=True, frozen=True):
    """The run itself could not proceed."""

    message: str
    details: dict[str, Any] | None = None


RunEvent = (
    RunCreated
    | RunQueued
    | TestStarted
    | TestPassed
    | TestFailed
    | TestBlocked
    | TestErrored
    | RunCompleted
    | RunCancelled
    | RunErrored
)

TestOutcome = TestPassed | TestFailed | TestBlocked

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        RunCreated,
        RunQueued,
        TestStarted,
        TestPassed,
        TestFailed,
        TestBlocked,
        TestErrored,
        RunCompleted,
        RunCancelled,
        RunErrored,
    )
}


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event about to be appended, with its envelope."""

    event: RunEvent
    metadata: Metadata = Metadata()
    event_id: uuid.UUID = msgspec.field(default_factory=new_event_id)
    occurred_at: datetime = msgspec.field(default_factory=utcnow)


class RecordedEvent(msgspec.Struct, frozen=True, gc=False):
    """A stored event with its envelope and its place in the stream and the store.

    The store builds it positionally (cheaper than keywords); the fields' order
    is part of its interface.
    """

    stream_id: str
    version: int
    global_position: int
    transaction_id: int
    event_id: uuid.UUID
    schema_version: int
    occurred_at: datetime
    recorded_at: datetime
    event: RunEvent
    metadata: Metadata

    @property
    def type(self) -> str:
        """The event's stable type tag."""
        return type_of(self.event)


def type_of(event: Event) -> str:
    """The stable type tag of an event."""
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)  # noqa: S101  (every concrete event has a string tag)
    return tag
