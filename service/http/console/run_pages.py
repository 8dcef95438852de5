"""The runs list, a run's page (live counts, results, what changed), cancel, the live feed."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import msgspec
from aiohttp import web

from projections.resources import TERMINAL, WorkflowTestRun
from service.http import pagination
from service.http.console import paging, render
from service.http.console.guard import form, metadata, view
from service.http.console.sessions import Session
from service.http.errors import ValidationFailedError, json_response
from service.http.handlers import events
from service.http.handlers.common import POOL, STORE, query_id
from service.http.middleware import PRINCIPAL
from service.runs import commands as runs
from service.runs import history as history_reads
from service.runs import reads

_decode_result = msgspec.json.Decoder(dict[str, Any]).decode


def run_dict(run: WorkflowTestRun) -> dict[str, Any]:
    """The run as the templates read it, with its status and whether it is over."""
    found: dict[str, Any] = msgspec.to_builtins(run)
    found["status"] = run.lifecycle.__struct_config__.tag
    found["terminal"] = isinstance(run.lifecycle, TERMINAL)
    return found


def _day(raw: str | None, name: str, end: bool) -> datetime | None:
    """A date from the filter form (a UTC day: its start, or its end for `to`)."""
    if not raw:
        return None
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError as error:
        raise ValidationFailedError.single(
            ["query", name], f"{name} must be a date (YYYY-MM-DD)", "date_parsing"
        ) from error
    return datetime.combine(day.date(), time.max if end else time.min, tzinfo=UTC)


def _choice(request: web.Request, name: str, allowed: frozenset[str]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ValidationFailedError.single(
            ["query", name], f"{name} must be one of: {choices}", "literal_error"
        )
    return value


async def _runs_list(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/runs`: the organisation's runs, filtered, a page at a time."""
    filters = reads.RunFilters(
        workflow_id=query_id(request, "workflow_id"),
        test_id=query_id(request, "test_id"),
        status=_choice(request, "status", reads.STATUSES),
        trigger_type=_choice(request, "trigger_type", reads.TRIGGERS),
        from_date=_day(request.query.get("from_date"), "from_date", end=False),
        to_date=_day(request.query.get("to_date"), "to_date", end=True),
    )
    page = pagination.parse(request.query)
    found, listed = await reads.list_runs(request.app[POOL], session.organisation_id, filters, page)
    return render.page(
        "runs.html",
        session=session,
        runs=[run_dict(run) for run in found],
        filters=request.query,
        statuses=sorted(reads.STATUSES),
        triggers=sorted(reads.TRIGGERS),
        pages=paging.links(request, listed),
    )


async def _run_page(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/runs/{run_id}`: lifecycle, timing, live counts, results, what changed."""
    pool, org = request.app[POOL], session.organisation_id
    run = await reads.get_run(pool, org, request.match_info["run_id"])
    verdict = request.query.get("verdict") or None
    if verdict is not None and verdict not in history_reads.VERDICT_FILTERS:
        raise ValidationFailedError.single(
            ["query", "verdict"], "verdict must be passed, failed, blocked or none", "literal_error"
        )
    page = pagination.parse(request.query, default_limit=50)
    if "order" not in request.query:
        # Results read best in run order, first test first.
        page = msgspec.structs.replace(page, order="asc")
    rows, listed = await history_reads.results_page(pool, org, run.id, verdict, page)
    return render.page(
        "run.html",
        session=session,
        run=run_dict(run),
        version=await history_reads.run_version(pool, org, run.id),
        results=[
            {**_decode_result(row["resource"]), "test_name": row["test_name"]} for row in rows
        ],
        verdict=verdict,
        pages=paging.links(request, listed),
        changes=await history_reads.changes_since_previous(pool, org, run.id),
    )


async def _run_counts(request: web.Request, session: Session) -> web.StreamResponse:
    """The run's status and counts as JSON: what the live bar repaints from."""
    run_id = request.match_info["run_id"]
    run = await reads.get_run(request.app[POOL], session.organisation_id, run_id)
    found = run_dict(run)
    return json_response(
        {
            "status": found["status"],
            "terminal": found["terminal"],
            "total_tests": run.total_tests,
            "counts": found["counts"],
            "timing": found["timing"],
        }
    )


async def _run_events(request: web.Request, session: Session) -> web.StreamResponse:
    """The run's event feed for the signed-in organisation, through its session.

    The page never holds an API key: the session's principal stands in for one,
    and the API's own handler answers (SSE with `Accept: text/event-stream`).
    """
    request[PRINCIPAL] = session.principal
    return await events.run_events(request)


async def _cancel(request: web.Request, session: Session) -> web.StreamResponse:
    """Cancel the run (a form with the session's CSRF token), then back to its page."""
    run_id = request.match_info["run_id"]
    await runs.cancel_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=session.organisation_id,
        run_id=run_id,
        metadata=metadata(request, session),
    )
    return render.redirect(f"/console/runs/{run_id}")


runs_list = view(_runs_list)
run_page = view(_run_page)
run_counts = view(_run_counts)
run_events = view(_run_events)
cancel = form(_cancel)
