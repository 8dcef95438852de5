"""A result's page, and a run's history: each event and the run's state right after it."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast

import msgspec
from aiohttp import web

from events.store import EventStore
from events.streams import stream_of
from events.types import RunCreated
from projections.replay import Replay, ReplayStep
from service.domain import NotFound as NotFoundError
from service.http.console import diff, render
from service.http.console.guard import view
from service.http.console.run_pages import run_dict
from service.http.console.sessions import Session
from service.http.errors import ValidationFailedError
from service.http.handlers.common import POOL, STORE
from service.runs import history as history_reads
from service.runs import reads

_decode_result = msgspec.json.Decoder(dict[str, Any]).decode
EVENTS_PER_PAGE = 50
# The tests of `run.created` shown on the history page (the event lists every one).
SNAPSHOTS_SHOWN = 5

_RESULT = "SELECT resource FROM test_results WHERE organisation_id = $1 AND id = $2"


async def _result(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/results/{id}`: inputs, outputs, the assertion, fingerprints, the diff."""
    result_id = request.match_info["result_id"]
    raw = await request.app[POOL].fetchval(_RESULT, session.organisation_id, result_id)
    if raw is None:
        raise NotFoundError("result_not_found", f"Workflow test result not found: {result_id}")
    result = _decode_result(raw)
    assertion = result.get("assertion_result") or {}
    expected, actual = assertion.get("expected_value"), assertion.get("actual_value")
    lines = diff.json_diff(expected, actual) if diff.diffable(expected, actual) else None
    return render.page(
        "result.html", session=session, result=result, assertion=assertion, diff=lines
    )


def _version(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):
        raise ValidationFailedError.single(
            ["query", name], f"{name} must be an event version", "value_error"
        )
    return int(raw)


class Replays:
    """The last few runs' replays, kept where they stopped (with the step they stopped at).

    Stepping forwards through a history then folds only the events in between,
    not the whole stream again (a run of 10,000 tests has 20,000 and more). A
    step backwards folds from the start. A replay is taken out while in use, so
    two requests never fold the same state at once.
    """

    def __init__(self, most: int = 4) -> None:
        self._most = most
        self._kept: OrderedDict[str, tuple[Replay, ReplayStep]] = OrderedDict()

    def take(self, run_id: str, version: int) -> tuple[Replay, ReplayStep | None]:
        """A replay of the run stopped at or before `version` (a fresh one if none is)."""
        kept = self._kept.pop(run_id, None)
        if kept is not None and kept[0].version <= version:
            return kept
        return Replay(), None

    def clear(self) -> None:
        """Forget every kept replay."""
        self._kept.clear()

    def give_back(self, run_id: str, replay: Replay, last: ReplayStep) -> None:
        """Keep the replay for the next request (the oldest kept one goes)."""
        self._kept[run_id] = (replay, last)
        while len(self._kept) > self._most:
            self._kept.popitem(last=False)


REPLAYS = web.AppKey("console_replays", Replays)


async def state_after(
    store: EventStore, run_id: str, version: int, replays: Replays | None = None
) -> ReplayStep | None:
    """The run right after event `version`, by the same fold the audit replay uses."""
    replays = replays or Replays()
    replay, last = replays.take(run_id, version)
    if last is None or last.event.version < version:
        events = store.iterate_stream(stream_of(run_id), replay.version + 1)
        steps = cast("AsyncGenerator[ReplayStep, None]", replay.steps(events))
        async with aclosing(steps):
            async for step in steps:
                last = step
                if step.event.version >= version:
                    break
    if last is not None:
        replays.give_back(run_id, replay, last)
    return last


def _event_data(step: ReplayStep) -> dict[str, Any]:
    """The event's fields, with a long test list cut short (the page stays small)."""
    event = step.event.event
    if not isinstance(event, RunCreated) or len(event.tests) <= SNAPSHOTS_SHOWN:
        return cast("dict[str, Any]", msgspec.to_builtins(event))
    data: dict[str, Any] = msgspec.to_builtins(
        msgspec.structs.replace(event, tests=event.tests[:SNAPSHOTS_SHOWN])
    )
    data["tests"].append(f"… and {len(event.tests) - SNAPSHOTS_SHOWN} more")
    return data


async def _history(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/runs/{id}/history`: events in stream order, and the state after one of them."""
    pool = request.app[POOL]
    run = await reads.get_run(pool, session.organisation_id, request.match_info["run_id"])
    stream = stream_of(run.id)
    last = await request.app[STORE].stream_version(stream)
    at = _version(request, "at")
    after = _version(request, "after")
    if at is not None:
        at = min(max(at, 1), last)
        if after is None:
            # The page of events that holds the selected one.
            after = (at - 1) // EVENTS_PER_PAGE * EVENTS_PER_PAGE
    after = after or 0
    events, more = await history_reads.event_heads(pool, run.id, after, EVENTS_PER_PAGE)
    selected = None
    if at is not None:
        step = await state_after(request.app[STORE], run.id, at, request.app[REPLAYS])
        if step is not None:
            selected = {
                "version": step.event.version,
                "type": step.event.type,
                "data": _event_data(step),
                "run": run_dict(step.run),
                "changed": [msgspec.to_builtins(result) for result in step.changed[:20]],
                "changed_total": len(step.changed),
            }
    return render.page(
        "history.html",
        session=session,
        run=run_dict(run),
        events=events,
        selected=selected,
        last=last,
        previous_after=max(after - EVENTS_PER_PAGE, 0) if after > 0 else None,
        next_after=events[-1]["version"] if events and more else None,
    )


result = view(_result)
history = view(_history)
