"""Encoding events for storage and decoding them back, through the upcasters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from events import codec
from events.types import (
    EVENT_TYPES,
    AssertionFailure,
    AssertionResult,
    Event,
    RunCancelled,
    RunCompleted,
    RunCreated,
    RunErrored,
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

SNAPSHOT = TestSnapshot(
    result_id="result-1",
    test_id="test-1",
    test_name="checks the total",
    block_id="block-1",
    block_type="llm",
    block_config={"model": "small", "temperature": 0.2, "tags": ["a", "b"]},
    handle_inputs={"text": "hello", "count": 3, "nested": {"x": None}},
    assertion={"kind": "equals", "path": "$.total", "value": 42},
    handle_inputs_fingerprint="hif",
    block_config_fingerprint="bcf",
    validity_fingerprint="vf",
    execution_fingerprint="ef",
)

FAILED_ASSERTION = AssertionResult(
    assertion_id="assertion-1",
    condition_kind="equals",
    outcome="failed",
    actual_value={"total": 41},
    expected_value=42,
    score=0.5,
    threshold=0.8,
    metric_kind="similarity",
    assertion_label="total is 42",
    failure=AssertionFailure(code="mismatch", message="41 != 42", details={"diff": 1}),
)

SAMPLES: dict[str, Event] = {
    "run.created": RunCreated(
        run_id="run-1",
        organisation_id="org-1",
        workflow_id="wf-1",
        workflow_version_id="wfv-1",
        workflow_draft_fingerprint="draft",
        trigger=Trigger(type="schedule"),
        scope=Scope(type="block", block_id="block-1"),
        tests=[SNAPSHOT, msgspec.structs.replace(SNAPSHOT, result_id="result-2", test_name=None)],
        validity_fingerprint="vf",
        input_fingerprint="if",
        engine_fingerprint="engine",
    ),
    "run.queued": RunQueued(),
    "test.started": TestStarted(result_id="result-1", test_id="test-1", attempt=2, worker="w-7"),
    "test.passed": TestPassed(
        result_id="result-1",
        test_id="test-1",
        handle_outputs={"total": 42},
        assertion_result=AssertionResult(
            assertion_id="assertion-1", condition_kind="equals", outcome="passed"
        ),
        warnings=["slow"],
        duration_ms=1234,
    ),
    "test.failed": TestFailed(
        result_id="result-1",
        test_id="test-1",
        handle_outputs={"total": 41},
        assertion_result=FAILED_ASSERTION,
        duration_ms=99,
    ),
    "test.blocked": TestBlocked(
        result_id="result-1",
        test_id="test-1",
        assertion_result=msgspec.structs.replace(FAILED_ASSERTION, outcome="blocked"),
    ),
    "test.errored": TestErrored(
        result_id="result-1",
        test_id="test-1",
        message="worker lost",
        attempts=3,
        details={"exit_code": 137},
    ),
    "run.completed": RunCompleted(),
    "run.cancelled": RunCancelled(reason="operator asked"),
    "run.errored": RunErrored(message="workflow missing", details={"workflow_id": "wf-1"}),
}


def test_every_event_type_has_a_sample() -> None:
    """The round-trip samples cover exactly the registered event types."""
    assert set(EVENT_TYPES) == set(SAMPLES)
    for tag, sample in SAMPLES.items():
        assert type(sample) is EVENT_TYPES[tag]


# Event types past their first schema version (each has upcasters in events/upcasters.py).
CURRENT_VERSIONS = {"test.started": 2}


@pytest.mark.parametrize("tag", sorted(SAMPLES))
def test_every_event_type_round_trips(tag: str) -> None:
    """encode then decode gives back an equal event of the same class, tagged in the payload."""
    sample = SAMPLES[tag]

    event_type, schema_version, data = codec.encode(sample)  # type: ignore[arg-type]

    assert event_type == tag
    assert schema_version == EVENT_TYPES[tag].schema_version == CURRENT_VERSIONS.get(tag, 1)
    assert msgspec.json.decode(data)["type"] == tag
    decoded = codec.decode(event_type, schema_version, data)
    assert sample == decoded
    assert type(decoded) is type(sample)
    assert sample == codec.decode(event_type, schema_version, data.decode())


def test_decoding_defaults_missing_fields() -> None:
    """A stored payload without fields that have defaults decodes with the defaults."""
    decoded = codec.decode(
        "test.started", 1, b'{"type": "test.started", "result_id": "r", "test_id": "t"}'
    )

    assert TestStarted(result_id="r", test_id="t", attempt=1, worker="") == decoded


def test_decoding_an_unknown_type_raises() -> None:
    """A type this release does not know is refused, whatever its payload says."""
    with pytest.raises(codec.UnknownEventTypeError):
        codec.decode("run.exploded", 1, b'{"type": "run.exploded"}')
    with pytest.raises(codec.UnknownEventTypeError):
        codec.decode("run.exploded", 1, b'{"type": "run.completed"}')
    with pytest.raises(codec.UnknownEventTypeError):
        codec.current_schema_version("run.exploded")


def test_current_schema_version_follows_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """The version written is the event class's schema_version."""
    assert codec.current_schema_version("test.started") == 2
    monkeypatch.setattr(TestStarted, "schema_version", 4)

    assert codec.current_schema_version("test.started") == 4
    assert codec.encode(SAMPLES["test.started"])[1] == 4  # type: ignore[arg-type]
    assert codec.encode(RunCompleted())[1] == 1


# --- upcasters ---------------------------------------------------------------------------


@pytest.fixture
def clean_upcasters() -> Iterator[None]:
    """Remove the test.started upcasters the test registers."""
    yield
    for version in (1, 2, 3):
        codec.unregister_upcaster("test.started", version)


# Schema 1: {"result_id", "test"}; schema 2 renamed `test` to `test_id`;
# schema 3 split `runner` ("worker#attempt") into `worker` and `attempt`.
V1 = {"result_id": "r-1", "test": "t-1", "runner": "w-2#5"}
V2 = {"result_id": "r-1", "test_id": "t-1", "runner": "w-2#5"}
V3 = {"type": "test.started", "result_id": "r-1", "test_id": "t-1", "attempt": 5, "worker": "w-2"}


def upcast() -> TestStarted:
    """What V1, V2 and V3 all decode to."""
    return TestStarted(result_id="r-1", test_id="t-1", attempt=5, worker="w-2")


def _register_chain(calls: list[tuple[int, dict[str, Any]]]) -> None:
    @codec.upcaster("test.started", 1)
    def v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((1, dict(payload)))
        upgraded = {k: v for k, v in payload.items() if k != "test"}
        upgraded["test_id"] = payload["test"]
        return upgraded

    @codec.upcaster("test.started", 2)
    def v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
        calls.append((2, dict(payload)))
        worker, attempt = payload["runner"].split("#")
        upgraded = {k: v for k, v in payload.items() if k != "runner"}
        return {**upgraded, "worker": worker, "attempt": int(attempt)}

    assert callable(v1_to_v2)
    assert callable(v2_to_v3)


@pytest.mark.usefixtures("clean_upcasters")
def test_upcasters_apply_step_by_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schema-1 payload goes through 1->2 then 2->3, each step seeing the previous output."""
    monkeypatch.setattr(TestStarted, "schema_version", 3)
    calls: list[tuple[int, dict[str, Any]]] = []
    _register_chain(calls)

    assert upcast() == codec.decode("test.started", 1, msgspec.json.encode(V1))
    assert calls == [(1, V1), (2, V2)]

    calls.clear()
    assert upcast() == codec.decode("test.started", 2, msgspec.json.encode(V2))
    assert calls == [(2, V2)]

    calls.clear()
    assert upcast() == codec.decode("test.started", 3, msgspec.json.encode(V3))
    assert calls == []


@pytest.mark.usefixtures("clean_upcasters")
def test_a_missing_upcaster_step_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """With schema 3 current and only the 1->2 step registered, an old payload is refused."""
    monkeypatch.setattr(TestStarted, "schema_version", 3)
    calls: list[tuple[int, dict[str, Any]]] = []
    _register_chain(calls)
    codec.unregister_upcaster("test.started", 2)

    with pytest.raises(codec.UnknownEventTypeError, match=r"test\.started from schema version 2"):
        codec.decode("test.started", 1, msgspec.json.encode(V1))
    with pytest.raises(codec.UnknownEventTypeError, match=r"test\.started from schema version 2"):
        codec.decode("test.started", 2, msgspec.json.encode(V2))


@pytest.mark.usefixtures("clean_upcasters")
def test_unregistering_an_upcaster_removes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """After unregister_upcaster the step is gone; unregistering twice is harmless."""
    monkeypatch.setattr(TestStarted, "schema_version", 3)
    _register_chain([])
    codec.unregister_upcaster("test.started", 1)
    codec.unregister_upcaster("test.started", 1)

    with pytest.raises(codec.UnknownEventTypeError, match="from schema version 1"):
        codec.decode("test.started", 1, msgspec.json.encode(V1))
    assert upcast() == codec.decode("test.started", 2, msgspec.json.encode(V2))


@pytest.mark.usefixtures("clean_upcasters")
def test_an_upcaster_producing_an_invalid_payload_fails_validation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The upcast payload is validated against the current struct."""
    monkeypatch.setattr(TestStarted, "schema_version", 2)
    codec.upcaster("test.started", 1)(lambda payload: payload)

    with pytest.raises(msgspec.ValidationError, match="test_id"):
        codec.decode("test.started", 1, msgspec.json.encode(V1))


def test_a_version_1_test_started_reads_as_version_2() -> None:
    """The real upcaster: version 1 called the runner `runner`, version 2 `worker`."""
    old = b'{"type": "test.started", "result_id": "r", "test_id": "t", "attempt": 2, "runner": "h"}'

    decoded = codec.decode("test.started", 1, old)

    assert TestStarted(result_id="r", test_id="t", attempt=2, worker="h") == decoded
