"""The judge and embeddings conditions against real local HTTP servers (no mocks)."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from events.types import AssertionResult
from service.execution.assertions import AssertionServices, evaluate

TIMEOUT_S = 0.3

# Fixed vectors of the embeddings server, by input text.
VECTORS = {
    "north": [1.0, 0.0],
    "north-east": [1.0, 1.0],
    "south": [-1.0, 0.0],
    '{"a":1,"b":2}': [3.0, 4.0],
    "three-four": [3.0, 4.0],
}


@dataclass
class Endpoints:
    """The base URL of the fake services, and the JSON bodies they received."""

    base: str
    received: list[tuple[str, Any]] = field(default_factory=list)

    def url(self, path: str) -> str:
        """The absolute URL of an endpoint."""
        return self.base + path


def _judge_label(rubric: str, value: Any) -> str:
    """A judge by rubric: "Does it mention X?" answers Yes/no; "Language?" names one."""
    text = str(value)
    if rubric.startswith("Language"):
        return "French" if "bonjour" in text else "English"
    word = rubric.removeprefix("Does it mention ").rstrip("?")
    return " Yes " if word in text else "no"  # spaces and case: the engine normalises


def _app(received: list[tuple[str, Any]]) -> web.Application:
    async def judge(request: web.Request) -> web.Response:
        body = await request.json()
        received.append((request.path, body))
        label = _judge_label(body["rubric"], body["value"])
        return web.json_response({"label": label, "reasoning": f"read {body['value']!r}"})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(10)  # cancelled when the client gives up and disconnects
        return web.json_response({"label": "yes"})

    async def error(request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def not_json(request: web.Request) -> web.Response:
        return web.Response(text="<html>yes</html>", content_type="text/html")

    def answer(payload: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(payload)

        return handler

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        received.append((request.path, body))
        data = [
            {"object": "embedding", "index": index, "embedding": VECTORS.get(text, [0.5, 0.5])}
            for index, text in enumerate(body["input"])
        ]
        return web.json_response({"object": "list", "data": data, "model": "fixed"})

    app = web.Application()
    app.router.add_post("/judge", judge)
    app.router.add_post("/judge/slow", slow)
    app.router.add_post("/judge/error", error)
    app.router.add_post("/judge/not-json", not_json)
    app.router.add_post("/judge/no-label", answer({"verdict": "yes"}))
    app.router.add_post("/judge/label-not-text", answer({"label": 1}))
    app.router.add_post("/embeddings", embeddings)
    app.router.add_post("/embeddings/slow", slow)
    app.router.add_post("/embeddings/error", error)
    app.router.add_post("/embeddings/not-json", not_json)
    app.router.add_post("/embeddings/one-vector", answer({"data": [{"embedding": [1.0, 0.0]}]}))
    app.router.add_post("/embeddings/no-data", answer({"embeddings": [[1.0], [1.0]]}))
    app.router.add_post(
        "/embeddings/text-vector", answer({"data": [{"embedding": ["a"]}, {"embedding": ["b"]}]})
    )
    app.router.add_post(
        "/embeddings/mismatch", answer({"data": [{"embedding": [1, 0]}, {"embedding": [1, 0, 0]}]})
    )
    app.router.add_post(
        "/embeddings/zero", answer({"data": [{"embedding": [0, 0]}, {"embedding": [1, 0]}]})
    )
    return app


@pytest.fixture(scope="module")
async def endpoints() -> AsyncIterator[Endpoints]:
    """A real HTTP server on 127.0.0.1 and a random port, serving every fake endpoint."""
    received: list[tuple[str, Any]] = []
    server = TestServer(_app(received), host="127.0.0.1")
    await server.start_server()
    yield Endpoints(base=str(server.make_url("")).rstrip("/"), received=received)
    await server.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real client session, closed after the test."""
    async with aiohttp.ClientSession() as client:
        yield client


def judge_services(url: str, session: aiohttp.ClientSession | None) -> AssertionServices:
    """Services with only a judge, and the short timeout."""
    return AssertionServices(
        judge_url=url, embeddings_url=None, session=session, timeout_s=TIMEOUT_S
    )


def embeddings_services(url: str, session: aiohttp.ClientSession | None) -> AssertionServices:
    """Services with only an embeddings endpoint, and the short timeout."""
    return AssertionServices(
        judge_url=None, embeddings_url=url, session=session, timeout_s=TIMEOUT_S
    )


async def run(
    condition: dict[str, Any], value: Any, services: AssertionServices, path: str | None = None
) -> AssertionResult:
    """Evaluate `condition` on the output handle `out` holding `value`."""
    target: dict[str, Any] = {"output_handle_id": "out"}
    if path is not None:
        target["path"] = path
    spec = {"id": "a-1", "target": target, "condition": condition}
    return await evaluate(spec, {"out": value}, services)


def code_of(result: AssertionResult) -> str | None:
    """The failure code of a result, or None when it passed."""
    return None if result.failure is None else result.failure.code


# Judge ------------------------------------------------------------------------


def judged(kind: str, rubric: str, label: str | None = None) -> dict[str, Any]:
    """A judge condition, with an expected label when one is given."""
    condition: dict[str, Any] = {"kind": kind, "rubric": rubric}
    if label is not None:
        condition["expected_label"] = label
    return condition


REFUND = "Does it mention refund?"

JUDGED = [
    # condition, value, outcome
    (judged("llm_judged_as", REFUND), "I want a refund", "passed"),
    (judged("llm_judged_as", REFUND), "Thanks a lot", "failed"),
    (judged("llm_judged_as", REFUND, "YES"), "refund please", "passed"),
    (judged("llm_not_judged_as", REFUND), "Thanks a lot", "passed"),
    (judged("llm_not_judged_as", REFUND), "I want a refund", "failed"),
    (judged("llm_judged_as", "Language?", "french"), "bonjour", "passed"),
    (judged("llm_judged_as", "Language?", "french"), "hello", "failed"),
    (judged("llm_not_judged_as", "Language?", "French"), "hello", "passed"),
]


@pytest.fixture
def judge(endpoints: Endpoints, session: aiohttp.ClientSession) -> AssertionServices:
    """Services whose judge is the rubric-following endpoint."""
    return judge_services(endpoints.url("/judge"), session)


@pytest.mark.parametrize(("condition", "value", "outcome"), JUDGED)
async def test_the_judge_decides_by_its_label(
    judge: AssertionServices, condition: dict[str, Any], value: str, outcome: str
) -> None:
    """judged_as passes when the label equals the expected one (case and spaces aside)."""
    result = await run(condition, value, judge)

    assert outcome == result.outcome
    assert condition.get("expected_label", "yes") == result.expected_value


async def test_the_judge_receives_the_rubric_the_value_at_the_path_and_the_label(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """The request body is {rubric, value, expected_label} with the resolved value."""
    endpoints.received.clear()
    condition = {"kind": "llm_judged_as", "rubric": "Does it mention refund?"}

    await run(
        condition,
        {"reply": {"text": "no refund"}},
        judge_services(endpoints.url("/judge"), session),
        "reply",
    )

    expected = {
        "rubric": "Does it mention refund?",
        "value": {"text": "no refund"},
        "expected_label": "yes",
    }
    assert [("/judge", expected)] == endpoints.received


async def test_a_failed_judgement_carries_the_label_and_reasoning(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """The judge's answer goes into the failure details."""
    condition = {"kind": "llm_judged_as", "rubric": "Does it mention refund?"}

    result = await run(condition, "Thanks", judge_services(endpoints.url("/judge"), session))

    assert ("failed", "assertion_failed") == (result.outcome, code_of(result))
    assert result.failure is not None
    assert "no" == result.failure.details["label"]
    assert "read 'Thanks'" == result.failure.details["reasoning"]


@pytest.mark.parametrize(
    "path",
    ["/judge/slow", "/judge/error", "/judge/not-json", "/judge/no-label", "/judge/label-not-text"],
)
async def test_a_judge_without_a_usable_answer_blocks(
    endpoints: Endpoints, session: aiohttp.ClientSession, path: str
) -> None:
    """Timeouts, HTTP errors, non-JSON and answers without a text label are judge_unavailable."""
    condition = {"kind": "llm_judged_as", "rubric": "Is it fine?"}
    started = time.monotonic()

    result = await run(condition, "x", judge_services(endpoints.url(path), session))

    assert ("blocked", "judge_unavailable") == (result.outcome, code_of(result))
    assert time.monotonic() - started < TIMEOUT_S + 1.5


async def test_a_slow_judge_is_reported_as_a_timeout(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """The message of a timed-out judge says how long it waited."""
    condition = {"kind": "llm_not_judged_as", "rubric": "Is it fine?"}

    result = await run(condition, "x", judge_services(endpoints.url("/judge/slow"), session))

    assert result.failure is not None
    assert f"the judge did not answer within {TIMEOUT_S} s" == result.failure.message


async def test_a_judge_answering_500_is_reported_with_its_status(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """The message of a failing judge names the HTTP status."""
    condition = {"kind": "llm_judged_as", "rubric": "Is it fine?"}

    result = await run(condition, "x", judge_services(endpoints.url("/judge/error"), session))

    assert result.failure is not None
    assert "the judge answered HTTP 500" == result.failure.message


async def test_an_unreachable_judge_blocks(session: aiohttp.ClientSession) -> None:
    """A judge URL where nothing listens is judge_unavailable."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    condition = {"kind": "llm_judged_as", "rubric": "Is it fine?"}

    result = await run(condition, "x", judge_services(f"http://127.0.0.1:{port}/judge", session))

    assert ("blocked", "judge_unavailable") == (result.outcome, code_of(result))


async def test_without_a_session_the_engine_opens_its_own(endpoints: Endpoints) -> None:
    """Services without a session still reach the judge."""
    condition = {"kind": "llm_judged_as", "rubric": "Does it mention refund?"}

    result = await run(condition, "refund", judge_services(endpoints.url("/judge"), None))

    assert "passed" == result.outcome


async def test_a_nested_judge_condition_asks_once_per_item(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """any_item_matches with a judge condition sends each item to the judge."""
    endpoints.received.clear()
    condition = {
        "kind": "any_item_matches",
        "condition": {"kind": "llm_judged_as", "rubric": "Does it mention refund?"},
    }

    result = await run(
        condition, ["hello", "a refund"], judge_services(endpoints.url("/judge"), session)
    )

    assert "passed" == result.outcome
    assert ["hello", "a refund"] == [body["value"] for _, body in endpoints.received]


# Embeddings -------------------------------------------------------------------


def by_embeddings(reference: str, threshold: float) -> dict[str, Any]:
    """A similarity condition by embeddings."""
    return {
        "kind": "similarity_gte",
        "reference": reference,
        "threshold": threshold,
        "method": "embeddings",
    }


COSINES = [
    # actual, condition, score, outcome
    ("north", by_embeddings("north-east", 0.7), 1 / math.sqrt(2), "passed"),
    ("north", by_embeddings("north-east", 0.75), 1 / math.sqrt(2), "failed"),
    ("north", by_embeddings("north", 1.0), 1.0, "passed"),
    ("north", by_embeddings("south", 0.0), 0.0, "passed"),  # cosine -1, clamped to 0
    ("north", by_embeddings("south", 0.1), 0.0, "failed"),
    ({"b": 2, "a": 1}, by_embeddings("three-four", 1.0), 1.0, "passed"),  # canonical JSON
    ("three-four", by_embeddings("north", 0.6), 0.6, "passed"),  # (3, 4) . (1, 0) / 5
]


@pytest.fixture
def embedder(endpoints: Endpoints, session: aiohttp.ClientSession) -> AssertionServices:
    """Services whose embeddings endpoint answers fixed vectors."""
    return embeddings_services(endpoints.url("/embeddings"), session)


@pytest.mark.parametrize(("actual", "condition", "score", "outcome"), COSINES)
async def test_similarity_by_embeddings_is_the_cosine_of_the_vectors(
    embedder: AssertionServices, actual: Any, condition: dict[str, Any], score: float, outcome: str
) -> None:
    """The score is the cosine similarity of the two vectors, clamped to [0, 1]."""
    result = await run(condition, actual, embedder)

    assert outcome == result.outcome
    assert score == pytest.approx(result.score)
    assert (condition["threshold"], "embeddings_cosine") == (result.threshold, result.metric_kind)


async def test_the_embeddings_service_receives_both_texts(
    endpoints: Endpoints, session: aiohttp.ClientSession
) -> None:
    """The request is {"input": [actual text, reference text]}, non-strings as sorted JSON."""
    endpoints.received.clear()
    condition = {
        "kind": "similarity_gte",
        "reference": "north",
        "threshold": 0.5,
        "method": "embeddings",
    }

    await run(
        condition, {"b": 2, "a": 1}, embeddings_services(endpoints.url("/embeddings"), session)
    )

    assert [("/embeddings", {"input": ['{"a":1,"b":2}', "north"]})] == endpoints.received


MALFORMED_EMBEDDINGS = [
    # path, a part of the message
    ("/embeddings/slow", f"the embeddings service did not answer within {TIMEOUT_S} s"),
    ("/embeddings/error", "the embeddings service answered HTTP 500"),
    ("/embeddings/not-json", "answered with an unusable body"),
    ("/embeddings/no-data", "answered with an unusable body"),
    ("/embeddings/text-vector", "answered with an unusable body"),
    ("/embeddings/one-vector", "answered 1 embeddings for 2 inputs"),
    ("/embeddings/mismatch", "the vectors have different lengths (2 and 3)"),
    ("/embeddings/zero", "a vector is zero or not finite"),
]


@pytest.mark.parametrize(("path", "message"), MALFORMED_EMBEDDINGS)
async def test_an_embeddings_service_without_a_usable_answer_blocks(
    endpoints: Endpoints, session: aiohttp.ClientSession, path: str, message: str
) -> None:
    """Timeouts, HTTP errors and malformed vectors are embeddings_unavailable, with no score."""
    condition = by_embeddings("north", 0.5)

    result = await run(condition, "north", embeddings_services(endpoints.url(path), session))

    assert ("blocked", "embeddings_unavailable") == (result.outcome, code_of(result))
    assert None is result.score
    assert result.failure is not None
    assert message in result.failure.message
