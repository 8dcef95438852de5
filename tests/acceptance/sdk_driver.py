"""Drive every `client.workflows.tests` (retab 0.0.155) or `client.workflows.evals` (0.0.160)
call against a live server, with the sync and the async client.

Run in a subprocess by tests/acceptance/test_sdk_releases.py, so that each SDK
release runs in its own environment (0.0.160 from its `pip install --target`
folder first on PYTHONPATH):

    python tests/acceptance/sdk_driver.py BASE_URL API_KEY OUT.json

It fails (non-zero exit, with the assertion's traceback) on the first
unexpected answer, and writes every JSON body the server answered, with the
method and path, to OUT.json for the model check (sdk_models.py).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from retab import AsyncRetab, Retab
from retab.exceptions import (
    APIError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    ValidationError,
)

VERSION = importlib.metadata.version("retab")
# The release's own words: 0.0.155 says "test", 0.0.160 says "eval".
WORD = "test" if VERSION == "0.0.155" else "eval"
FAMILY = f"{WORD}s"
ID = f"{WORD}_id"
TOTAL = f"total_{FAMILY}"
INVOICE = "tests.run_functions:invoice"
SLOW_INVOICE = "tests.run_functions:slow_invoice"
TERMINAL = ("completed", "error", "cancelled")
TIMEOUT_S = 30.0

captured: list[dict[str, Any]] = []


def _record(response: httpx.Response) -> None:
    body: Any = None
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
    captured.append(
        {
            "method": response.request.method,
            "path": response.request.url.path,
            "status": response.status_code,
            "body": body,
            "sdk": VERSION,
        }
    )


def _sync_hook(response: httpx.Response) -> None:
    response.read()
    _record(response)


async def _async_hook(response: httpx.Response) -> None:
    await response.aread()
    _record(response)


async def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an SDK method of either client: the sync one answers, the async one is awaited."""
    answer = method(*args, **kwargs)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


async def walk(page: Any) -> list[Any]:
    """Every item of a list, auto-paging (`for` on a sync page, `async for` on an async one)."""
    if hasattr(page, "__aiter__"):
        return [item async for item in page.auto_paging_iter()]
    return list(page.auto_paging_iter())


async def raises(kind: type[APIError], method: Any, *args: Any, **kwargs: Any) -> APIError:
    """The SDK exception of class `kind` the call raises (anything else fails the run)."""
    try:
        await call(method, *args, **kwargs)
    except APIError as error:
        if not isinstance(error, kind):
            raise AssertionError(f"expected {kind.__name__}, got {error!r}") from error
        return error
    raise AssertionError(f"{method.__qualname__} raised nothing; expected {kind.__name__}")


def ids(items: Any) -> list[str]:
    """The ids of a page's data or of a list of items."""
    return [item.id for item in getattr(items, "data", items)]


class Scenario:
    """Every method of `workflows.<family>` on one client (sync or async)."""

    def __init__(self, client: Any, base_url: str, label: str) -> None:
        self.client = client
        self.family = getattr(client.workflows, FAMILY)
        self.base_url = base_url
        self.label = label

    # helpers ----------------------------------------------------------------

    async def workflow(self, name: str) -> str:
        workflow = await call(
            self.client.workflows.create, project_id=f"proj_{self.label}", name=name
        )
        assert name == workflow.name
        return str(workflow.id)

    async def block(self, workflow_id: str, entrypoint: str = INVOICE, **extra: Any) -> str:
        block = await call(
            self.client.workflows.blocks.create,
            workflow_id=workflow_id,
            type="function",
            config={"entrypoint": entrypoint},
            **extra,
        )
        assert workflow_id == block.workflow_id
        return str(block.id)

    async def saved(
        self,
        workflow_id: str,
        block_id: str,
        *,
        vendor: str = "ACME",
        expected: Any = "ACME",
        handle: str = "output-json-0",
        name: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        return await call(
            self.family.create,
            workflow_id=workflow_id,
            target={"type": "block", "block_id": block_id},
            source={
                "type": "manual",
                "handle_inputs": {
                    "input": {
                        "type": "json",
                        "data": {"name": vendor, "total": 12, **(extra or {})},
                    }
                },
            },
            assertion={
                "target": {"output_handle_id": handle, "path": "vendor.name"},
                "condition": {"kind": "equals", "expected": expected},
            },
            name=name,
        )

    async def wait(self, run_id: str, status: str = "completed") -> Any:
        deadline = time.monotonic() + TIMEOUT_S
        run = await call(self.family.runs.get, run_id)
        while run.lifecycle.status not in TERMINAL and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            run = await call(self.family.runs.get, run_id)
        assert status == run.lifecycle.status, run
        return run

    async def summarised(self, test_id: str, result_id: str) -> Any:
        """The saved test once its latest-run summary shows this finished result."""
        deadline = time.monotonic() + TIMEOUT_S
        test = await call(self.family.get, test_id)
        while time.monotonic() < deadline:
            summary = test.latest_run_summary
            if summary and result_id == summary.run_record_id and summary.status.value in TERMINAL:
                return test
            await asyncio.sleep(0.05)
            test = await call(self.family.get, test_id)
        raise AssertionError(f"no summary of {result_id} on {test_id}")

    # scenarios --------------------------------------------------------------

    async def saved_tests(self) -> None:
        """create, list (every filter), get, update (name, assertion, source), delete."""
        workflow_id = await self.workflow("Invoices")
        block_id = await self.block(workflow_id)
        other_block = await self.block(workflow_id)
        first = await self.saved(workflow_id, block_id, name="vendor is ACME")
        assert first.id.startswith("wfnodetest_")
        assert block_id == first.target.block_id
        assert "valid" == first.validation_status
        assert [] == first.validation_issues
        assert first.latest_run_summary is None
        second = await self.saved(workflow_id, block_id, name="second")
        third = await self.saved(workflow_id, other_block, name="elsewhere")

        listed = await call(self.family.list, workflow_id=workflow_id)
        assert [third.id, second.id, first.id] == ids(listed)
        assert not listed.has_more
        ascending = await call(self.family.list, workflow_id=workflow_id, order="asc")
        assert [first.id, second.id, third.id] == ids(ascending)
        by_block = await call(
            self.family.list, workflow_id=workflow_id, target_block_id=other_block
        )
        assert [third.id] == ids(by_block)

        fetched = await call(self.family.get, first.id)
        assert first.model_dump(exclude={"freshness"}) == fetched.model_dump(exclude={"freshness"})
        renamed = await call(self.family.update, first.id, name="renamed")
        assert "renamed" == renamed.name
        assert first.assertion == renamed.assertion
        reasserted = await call(
            self.family.update,
            first.id,
            assertion={
                "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                "condition": {"kind": "starts_with", "expected": "AC"},
                "label": "vendor prefix",
            },
        )
        assert "AC" == reasserted.assertion.condition.expected
        assert "vendor prefix" == reasserted.assertion.label
        resourced = await call(
            self.family.update,
            first.id,
            source={
                "type": "manual",
                "handle_inputs": {"input": {"type": "json", "data": {"name": "ACME Co"}}},
            },
        )
        assert {"name": "ACME Co"} == resourced.source.handle_inputs["input"].data

        run = await call(
            self.family.runs.create, workflow_id=workflow_id, scope={"type": "single", ID: first.id}
        )
        assert first.id == getattr(run, ID)
        run = await self.wait(run.id)
        [result] = (await call(self.family.results.list, run_id=run.id)).data
        assert "passed" == result.verdict
        summarised = await self.summarised(first.id, result.id)
        for summary in (summarised.latest_run_summary, summarised.latest_passing_run_summary):
            assert result.id == summary.run_record_id
            assert "passed" == summary.outcome.value
        # The release's fingerprint name is read (0.0.160 reads None if it is not sent).
        fingerprint = (
            "block_config_fingerprint" if WORD == "test" else "block_execution_fingerprint"
        )
        assert getattr(result, fingerprint)
        assert getattr(result, fingerprint) == getattr(summarised.latest_run_summary, fingerprint)
        assert summarised.latest_failing_run_summary is None
        assert "fresh" == summarised.freshness.status.value

        assert await call(self.family.delete, first.id) is None
        await raises(NotFoundError, self.family.get, first.id)
        await raises(NotFoundError, self.family.delete, first.id)
        await raises(NotFoundError, self.family.update, first.id, name="gone")
        assert [third.id, second.id] == ids(await call(self.family.list, workflow_id=workflow_id))
        kept = await call(self.family.runs.get, run.id)
        assert first.id == getattr(kept, ID)
        assert [run.id] == ids(await call(self.family.runs.list, **{ID: first.id}))
        assert "passed" == (await call(self.family.results.get, result.id)).verdict

    async def runs_and_results(self) -> None:
        """runs.create in every scope, runs.get, runs.list with each filter, results.list/get."""
        started = datetime.now(UTC) - timedelta(seconds=1)
        workflow_id = await self.workflow("Runs")
        block_id = await self.block(workflow_id)
        other_block = await self.block(workflow_id)
        passing = await self.saved(workflow_id, block_id, name="passes")
        failing = await self.saved(workflow_id, block_id, expected="Globex", name="fails")
        blocked = await self.saved(workflow_id, block_id, handle="output-json-9", name="blocked")
        elsewhere = await self.saved(workflow_id, other_block, vendor="Initech", expected="Initech")
        verdicts = {passing.id: "passed", failing.id: "failed", blocked.id: "blocked"}
        verdicts[elsewhere.id] = "passed"

        omitted = await call(self.family.runs.create, workflow_id=workflow_id)
        assert omitted.id.startswith("wftestrun_")
        assert 4 == getattr(omitted, TOTAL)
        assert getattr(omitted, ID) is None
        assert omitted.target is None
        assert "api" == omitted.trigger.type.value
        whole = await call(
            self.family.runs.create, workflow_id=workflow_id, scope={"type": "workflow"}
        )
        single = await call(
            self.family.runs.create,
            workflow_id=workflow_id,
            scope={"type": "single", ID: failing.id},
        )
        assert 1 == getattr(single, TOTAL)
        assert failing.id == getattr(single, ID)
        assert block_id == single.target.block_id
        by_block = await call(
            self.family.runs.create,
            workflow_id=workflow_id,
            scope={"type": "block", "block_id": block_id},
        )
        assert 3 == getattr(by_block, TOTAL)
        created = [omitted, whole, single, by_block]
        for run in created:
            done = await self.wait(run.id)
            counts = done.counts
            assert getattr(done, TOTAL) == counts.lifecycle_counts.completed
            assert counts.lifecycle_counts.completed == sum(
                (counts.outcome.passed, counts.outcome.failed, counts.outcome.blocked)
            )
            assert done.timing.started_at <= done.timing.completed_at
            assert "fresh" == done.freshness.status.value
        finished = await call(self.family.runs.get, omitted.id)
        assert (2, 1, 1) == (
            finished.counts.outcome.passed,
            finished.counts.outcome.failed,
            finished.counts.outcome.blocked,
        )

        newest_first = [by_block.id, single.id, whole.id, omitted.id]
        runs = self.family.runs
        assert newest_first == ids(await call(runs.list, workflow_id=workflow_id))
        assert newest_first[::-1] == ids(
            await call(runs.list, workflow_id=workflow_id, order="asc")
        )
        assert newest_first == ids(
            await call(runs.list, workflow_id=workflow_id, sort_by="created_at")
        )
        assert [by_block.id, whole.id, omitted.id] == ids(
            await call(runs.list, workflow_id=workflow_id, **{ID: passing.id})
        )
        assert [whole.id, omitted.id] == ids(
            await call(runs.list, workflow_id=workflow_id, target_block_id=other_block)
        )
        assert newest_first == ids(
            await call(runs.list, workflow_id=workflow_id, status="completed")
        )
        assert [] == ids(await call(runs.list, workflow_id=workflow_id, exclude_status="completed"))
        assert newest_first == ids(
            await call(runs.list, workflow_id=workflow_id, trigger_type="api")
        )
        assert [] == ids(await call(runs.list, workflow_id=workflow_id, trigger_type="schedule"))
        assert newest_first == ids(
            await call(runs.list, workflow_id=workflow_id, from_date=started)
        )
        assert [] == ids(await call(runs.list, workflow_id=workflow_id, to_date=started))

        results = await call(self.family.results.list, run_id=omitted.id)
        assert 4 == len(results.data)
        assert not results.has_more
        ascending = await call(self.family.results.list, run_id=omitted.id, order="asc")
        assert ids(results)[::-1] == ids(ascending)
        for result in results.data:
            test_id = getattr(result, ID)
            assert result.id.startswith("wfnodetestrun_")
            assert omitted.id == getattr(result, f"workflow_{WORD}_run_id")
            assert verdicts[test_id] == result.verdict
            assert result.verdict == result.assertion_result.outcome
            assert "function" == result.block_type
            assert result.execution_fingerprint
            assert result.handle_inputs_fingerprint
            assert result.workflow_draft_fingerprint
            data = result.handle_inputs["input"].data
            assert {"vendor": {"name": data["name"]}, "total": 12} == result.handle_outputs[
                "output-json-0"
            ].data
            again = await call(self.family.results.get, result.id)
            assert result.model_dump() == again.model_dump()
        by_test = {getattr(result, ID): result for result in results.data}
        assert "missing_handle" == by_test[blocked.id].assertion_result.failure.code
        assert "assertion_failed" == by_test[failing.id].assertion_result.failure.code

    async def cancel(self) -> None:
        """runs.cancel of a live run; a second cancel is a NotFoundError."""
        workflow_id = await self.workflow("Slow")
        block_id = await self.block(workflow_id, SLOW_INVOICE)
        for n in range(4):
            await self.saved(
                workflow_id, block_id, vendor=f"V{n}", expected=f"V{n}", extra={"delay": 0.5}
            )
        run = await call(self.family.runs.create, workflow_id=workflow_id)
        cancelled = await call(self.family.runs.cancel, run.id)
        assert run.id == cancelled.id
        assert "cancelled" == cancelled.lifecycle.status
        assert cancelled.lifecycle.reason
        error = await raises(NotFoundError, self.family.runs.cancel, run.id)
        assert 404 == error.status_code
        assert [run.id] == ids(
            await call(self.family.runs.list, workflow_id=workflow_id, status="cancelled")
        )

    async def auto_paging(self) -> None:
        """Two at a time, auto-paging visits every test, run and result once, in order."""
        workflow_id = await self.workflow("Many")
        block_id = await self.block(workflow_id)
        tests = [
            await self.saved(workflow_id, block_id, vendor=f"V{n}", expected=f"V{n}")
            for n in range(5)
        ]
        test_ids = [test.id for test in tests]
        page = await call(self.family.list, workflow_id=workflow_id, limit=2)
        assert page.has_more
        assert test_ids[::-1] == ids(await walk(page))
        runs = [
            await call(
                self.family.runs.create, workflow_id=workflow_id, scope={"type": "single", ID: t}
            )
            for t in test_ids[:2]
        ]
        whole = await call(self.family.runs.create, workflow_id=workflow_id)
        run_ids = [run.id for run in [*runs, whole]]
        run_page = await call(self.family.runs.list, workflow_id=workflow_id, limit=2)
        assert run_page.has_more
        assert run_ids[::-1] == ids(await walk(run_page))
        await self.wait(whole.id)
        result_page = await call(self.family.results.list, run_id=whole.id, limit=2)
        assert result_page.has_more
        walked = await walk(result_page)
        assert 5 == len({result.id for result in walked}) == len(walked)
        assert set(test_ids) == {getattr(result, ID) for result in walked}

    async def errors(self, bad_client: Any) -> None:
        """NotFoundError, ValidationError, ConflictError, AuthenticationError, as raised."""
        workflow_id = await self.workflow("Errors")
        block_id = await self.block(workflow_id, id=f"block_{self.label}")
        missing = await raises(NotFoundError, self.family.runs.get, "wftestrun_missing")
        assert "run_not_found" == missing.code
        assert "wftestrun_missing" in missing.message
        await raises(NotFoundError, self.family.runs.cancel, "wftestrun_missing")
        await raises(NotFoundError, self.family.get, "wfnodetest_missing")
        await raises(NotFoundError, self.family.update, "wfnodetest_missing", name="x")
        await raises(NotFoundError, self.family.delete, "wfnodetest_missing")
        await raises(NotFoundError, self.family.results.get, "wfnodetestrun_missing")
        await raises(NotFoundError, self.family.results.list, run_id="wftestrun_missing")
        await raises(NotFoundError, self.family.list, workflow_id="wf_missing")
        await raises(
            NotFoundError,
            self.family.runs.create,
            workflow_id=workflow_id,
            scope={"type": "single", ID: "wfnodetest_missing"},
        )
        empty = await raises(ValidationError, self.family.runs.create, workflow_id=workflow_id)
        assert 422 == empty.status_code
        await raises(
            ValidationError,
            self.family.create,
            workflow_id=workflow_id,
            target={"type": "block", "block_id": block_id},
            source={"type": "manual", "handle_inputs": {}},
            assertion={
                "target": {"output_handle_id": "output-json-0"},
                "condition": {"kind": "similarity_gte", "reference": "x", "threshold": 1.5},
            },
        )
        await raises(ValidationError, self.family.runs.list, status="sleeping")
        taken = await raises(
            ConflictError,
            self.client.workflows.blocks.create,
            workflow_id=workflow_id,
            type="function",
            id=f"block_{self.label}",
        )
        assert 409 == taken.status_code
        refused = await raises(
            AuthenticationError, getattr(bad_client.workflows, FAMILY).runs.get, "wftestrun_x"
        )
        assert 401 == refused.status_code
        await raises(
            AuthenticationError, getattr(bad_client.workflows, FAMILY).list, workflow_id=workflow_id
        )

    async def registry(self) -> None:
        """workflows.list as the SDK sends it (project_id, sort_by); blocks keep parent_id."""
        project = f"proj_registry_{self.label}"
        older = await call(self.client.workflows.create, project_id=project, name="older")
        newer = await call(self.client.workflows.create, project_id=project, name="newer")
        # A block changes the older workflow's draft: it is now the latest updated.
        parent = await self.block(older.id)
        child = await call(
            self.client.workflows.blocks.create,
            workflow_id=older.id,
            type="extract",
            parent_id=parent,
        )
        assert parent == child.parent_id
        listed = await call(self.client.workflows.list, project_id=project)
        assert [older.id, newer.id] == ids(listed)
        by_creation = await call(
            self.client.workflows.list, project_id=project, sort_by="created_at"
        )
        assert [newer.id, older.id] == ids(by_creation)

    async def all(self, bad_client: Any) -> None:
        await self.registry()
        await self.saved_tests()
        await self.runs_and_results()
        await self.cancel()
        await self.auto_paging()
        await self.errors(bad_client)


async def main(base_url: str, api_key: str) -> None:
    """Both clients, one after the other, against the same server."""
    sync = Retab(api_key=api_key, base_url=base_url, max_retries=0, timeout=15)
    sync.client.event_hooks["response"] = [_sync_hook]
    bad_sync = Retab(api_key="rtk_not_a_key", base_url=base_url, max_retries=0, timeout=15)
    try:
        await Scenario(sync, base_url, f"sync_{WORD}").all(bad_sync)
    finally:
        sync.client.close()
        bad_sync.client.close()
    asynchronous = AsyncRetab(api_key=api_key, base_url=base_url, max_retries=0, timeout=15)
    asynchronous.client.event_hooks["response"] = [_async_hook]
    bad_async = AsyncRetab(api_key="rtk_not_a_key", base_url=base_url, max_retries=0, timeout=15)
    try:
        await Scenario(asynchronous, base_url, f"async_{WORD}").all(bad_async)
    finally:
        await asynchronous.client.aclose()
        await bad_async.client.aclose()


if __name__ == "__main__":
    url, key, out = sys.argv[1:4]
    try:
        asyncio.run(main(url, key))
    finally:
        with open(out, "w", encoding="utf-8") as file:
            json.dump(captured, file)
    print(f"retab {VERSION}: workflows.{FAMILY} OK, {len(captured)} responses")
