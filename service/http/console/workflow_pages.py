"""Workflows, their blocks and saved tests, a saved test's history, and starting runs."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import msgspec
from aiohttp import web

from service.http import pagination
from service.http.console import paging, render
from service.http.console.guard import form, metadata, view
from service.http.console.sessions import Session
from service.http.errors import from_msgspec
from service.http.handlers.common import POOL, STORE
from service.models import CreateRunRequest
from service.paging import PageQuery
from service.registry import store as registry
from service.runs import commands as runs
from service.runs import history as history_reads

_decode_result = msgspec.json.Decoder(dict[str, Any]).decode
# A workflow page lists this many blocks at most (runs and tests are paginated).
BLOCKS_SHOWN = 100


async def _workflows(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/workflows`: the organisation's workflows, a page at a time."""
    page = pagination.parse(request.query)
    workflows, listed = await registry.list_workflows(
        request.app[POOL], session.organisation_id, page
    )
    return render.page(
        "workflows.html",
        session=session,
        workflows=[msgspec.to_builtins(workflow) for workflow in workflows],
        pages=paging.links(request, listed),
    )


async def _workflow(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/workflows/{id}`: blocks, saved tests with freshness, latest runs, run buttons."""
    pool, org = request.app[POOL], session.organisation_id
    workflow = await registry.get_workflow(pool, org, request.match_info["workflow_id"])
    blocks, _ = await registry.list_blocks(
        pool, org, workflow.id, PageQuery(limit=BLOCKS_SHOWN, order="asc")
    )
    page = pagination.parse(request.query, default_limit=50)
    tests, listed = await registry.list_tests(pool, org, workflow.id, page)
    return render.page(
        "workflow.html",
        session=session,
        workflow=msgspec.to_builtins(workflow),
        blocks=[msgspec.to_builtins(block) for block in blocks],
        tests=[msgspec.to_builtins(test) for test in tests],
        pages=paging.links(request, listed),
    )


def _scope(posted: Any) -> dict[str, str] | None:
    kind = posted.get("scope", "workflow")
    if kind == "block":
        return {"type": "block", "block_id": str(posted.get("block_id", ""))}
    if kind == "single":
        return {"type": "single", "test_id": str(posted.get("test_id", ""))}
    return None


async def _start_run(request: web.Request, session: Session) -> web.StreamResponse:
    """Start a run of the whole workflow, one block's tests, or one test; then its page."""
    posted = await request.post()
    try:
        body = msgspec.convert(
            {"workflow_id": request.match_info["workflow_id"], "scope": _scope(posted)},
            CreateRunRequest,
        )
    except msgspec.ValidationError as error:
        raise from_msgspec(error, "form") from error
    run = await runs.create_run(
        request.app[POOL],
        request.app[STORE],
        organisation_id=session.organisation_id,
        body=body,
        metadata=metadata(request, session),
        trigger="manual",
    )
    return render.redirect(f"/console/runs/{quote(run.id)}")


def flaky_marks(history: list[dict[str, Any]]) -> list[bool]:
    """For each result (newest first): did its verdict change from the run before while
    the execution fingerprint (block config, inputs, assertion) stayed the same?"""
    marks = [False] * len(history)
    for index in range(len(history) - 1):
        now, before = history[index], history[index + 1]
        if (
            now["verdict"] is not None
            and before["verdict"] is not None
            and now["verdict"] != before["verdict"]
            and now["execution_fingerprint"] == before["execution_fingerprint"]
        ):
            marks[index] = True
    return marks


async def _test_history(request: web.Request, session: Session) -> web.StreamResponse:
    """`/console/tests/{id}`: the saved test's verdicts across runs, with fingerprints."""
    pool, org = request.app[POOL], session.organisation_id
    test = await registry.get_test(pool, org, request.match_info["test_id"])
    page = pagination.parse(request.query, default_limit=50)
    rows, listed = await history_reads.test_results_page(pool, org, test.id, page)
    history = []
    for row in rows:
        result = _decode_result(row["resource"])
        result["run_created_at"] = row["created_at"]
        history.append(result)
    marks = flaky_marks(history)
    for result, flaky in zip(history, marks, strict=True):
        result["flaky"] = flaky
    return render.page(
        "test.html",
        session=session,
        test=msgspec.to_builtins(test),
        history=history,
        flaky=any(marks),
        pages=paging.links(request, listed),
    )


workflows = view(_workflows)
workflow = view(_workflow)
start_run = form(_start_run)
test_history = view(_test_history)
