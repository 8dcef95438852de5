"""`python -m service demo` (`scripts/demo`): a workflow that runs anywhere, its tests, and a run.

Over the HTTP API of a running server, it makes (or reuses) the workflow
`Invoice demo`: two `function` blocks shipped in the package
(`service.ops.demo_blocks`, which `scripts/run` allows) and saved tests of
which most pass, one fails on purpose and one is blocked with a readable
reason. Then it starts a run, follows it, prints each verdict, the console link
and the `testrun` command that would gate CI on the workflow. Exits 0 when the
verdicts are the expected ones, 1 when not (with a hint), 2 when the server
cannot be used.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.testrun.api import Client, CommandError, NotFoundError
from service.testrun.follow import Progress, Tally, follow
from service.testrun.report import test_record

__all__ = ["DEMO_TESTS", "WORKFLOW_NAME", "DemoTest", "demo", "main"]

WORKFLOW_NAME = "Invoice demo"
# Seven tests of in-process functions take well under a second; this is a stuck server.
RUN_TIMEOUT_S = 120.0
BLOCKS_MODULE = "service.ops.demo_blocks"
READER, CLASSIFIER = "demo_read_invoice", "demo_classify_document"
BLOCKS = (
    (READER, "Read invoice (rules)", f"{BLOCKS_MODULE}:read_invoice"),
    (CLASSIFIER, "Classify document", f"{BLOCKS_MODULE}:classify_document"),
)

ACME_INVOICE = """ACME Corporation
12 Harbour Road, Rotterdam
INVOICE
Invoice No: INV-2041
Date: 2026-11-30
Bill to: Globex Ltd
3 x Paper, A4 @ 4.50
2 x Toner cartridge @ 89.00
1 x Desk lamp @ 1,013.50
Total due: EUR 1,205.00
Payment terms: 30 days
"""
CAFE_RECEIPT = """Corner Cafe
RECEIPT
2 x Coffee @ 3.20
Total: EUR 6.40
Paid by card. Thank you for your purchase!
"""


@dataclass(frozen=True)
class DemoTest:
    """One saved test of the demo and the verdict it is meant to end with."""

    name: str
    block_id: str
    document: str
    path: str
    condition: dict[str, Any]
    expected_verdict: str


DEMO_TESTS = (
    DemoTest(
        "Reads the vendor name",
        READER,
        ACME_INVOICE,
        "vendor.name",
        {"kind": "equals", "expected": "ACME Corporation"},
        "passed",
    ),
    DemoTest(
        "Invoice number looks like INV-0000",
        READER,
        ACME_INVOICE,
        "invoice_number",
        {"kind": "matches_regex", "pattern": r"INV-\d{4}"},
        "passed",
    ),
    DemoTest(
        "Reads the three line items",
        READER,
        ACME_INVOICE,
        "items",
        {"kind": "length_compare", "op": "eq", "expected": 3},
        "passed",
    ),
    DemoTest(
        "Total is 1,205.00 EUR",
        READER,
        ACME_INVOICE,
        "",
        {"kind": "object_contains", "expected": {"total": 1205.0, "currency": "EUR"}},
        "passed",
    ),
    DemoTest(
        "A receipt is classified as a receipt",
        CLASSIFIER,
        CAFE_RECEIPT,
        "label",
        {"kind": "equals", "expected": "receipt"},
        "passed",
    ),
    DemoTest(
        "Total matches the purchase order (fails on purpose)",
        READER,
        ACME_INVOICE,
        "total",
        {"kind": "number_compare", "op": "eq", "expected": 1250.0},
        "failed",
    ),
    DemoTest(
        "A scanned invoice without text (blocked on purpose)",
        READER,
        "",
        "total",
        {"kind": "exists"},
        "blocked",
    ),
)


def _test_body(workflow_id: str, test: DemoTest) -> dict[str, Any]:
    target: dict[str, Any] = {"output_handle_id": "output-json-0"}
    if test.path:
        target["path"] = test.path
    return {
        "workflow_id": workflow_id,
        "name": test.name,
        "target": {"type": "block", "block_id": test.block_id},
        "source": {
            "type": "manual",
            "handle_inputs": {"document": {"type": "json", "data": test.document}},
        },
        "assertion": {"target": target, "condition": test.condition, "label": test.name},
    }


async def _workflow(client: Client) -> tuple[dict[str, Any], bool]:
    """The demo workflow (by name), made if missing; and whether it was made now."""
    workflows = await client.pages("/v1/workflows", {})
    named = [w for w in workflows if w.get("name") == WORKFLOW_NAME]
    if named:
        return named[-1], False
    body = {"name": WORKFLOW_NAME, "description": "Made by `python -m service demo`."}
    made: dict[str, Any] = await client.request("POST", "/v1/workflows", body=body)
    return made, True


async def _blocks(client: Client, workflow_id: str) -> None:
    """The demo's blocks (chosen ids), made if missing."""
    for block_id, label, entrypoint in BLOCKS:
        try:
            block = await client.request("GET", f"/v1/workflows/blocks/{block_id}")
        except NotFoundError:
            body = {
                "workflow_id": workflow_id,
                "type": "function",
                "id": block_id,
                "label": label,
                "config": {"entrypoint": entrypoint},
            }
            await client.request("POST", "/v1/workflows/blocks", body=body)
            continue
        if block.get("workflow_id") != workflow_id:
            msg = (
                f"block id {block_id!r} belongs to workflow {block.get('workflow_id')}, not to "
                f"{WORKFLOW_NAME!r} ({workflow_id}): delete that block, then run the demo again"
            )
            raise CommandError(msg)


async def _tests(client: Client, workflow_id: str) -> dict[str, DemoTest]:
    """The demo's saved tests (by name), made if missing; the demo tests by saved test id."""
    existing = {
        test.get("name"): test["id"]
        for test in await client.pages("/v1/workflows/tests", {"workflow_id": workflow_id})
    }
    by_id: dict[str, DemoTest] = {}
    for test in DEMO_TESTS:
        test_id = existing.get(test.name)
        if test_id is None:
            made = await client.request(
                "POST", "/v1/workflows/tests", body=_test_body(workflow_id, test)
            )
            test_id = made["id"]
        by_id[str(test_id)] = test
    return by_id


async def demo(client: Client, *, key_hint: str) -> int:
    """Set up the demo workflow on the server, run its tests, print what happened."""
    workflow, made = await _workflow(client)
    workflow_id = workflow["id"]
    await _blocks(client, workflow_id)
    expected = await _tests(client, workflow_id)
    what = "Made" if made else "Reusing"
    print(f"{what} the workflow {WORKFLOW_NAME!r} ({workflow_id}): {len(BLOCKS)} function blocks,")
    print(f"{len(DEMO_TESTS)} saved tests (one fails on purpose, one is blocked on purpose).")
    run = await client.request(
        "POST",
        "/v1/workflows/tests/runs",
        body={"workflow_id": workflow_id},
        headers={"Idempotency-Key": f"demo-{uuid.uuid4().hex}"},
    )
    print(f"Started run {run['id']}; waiting for it ...", flush=True)
    progress = Progress(sys.stderr)
    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            run = await follow(client, run, progress)
    except TimeoutError:
        progress.close()
        msg = (
            f"run {run['id']} did not finish within {RUN_TIMEOUT_S:.0f} s: is a runner running? "
            "(`serve` runs one unless RUNNER_ENABLED=false; `python -m service worker` adds one)"
        )
        raise CommandError(msg) from None
    progress.update(Tally.of_run(run), final=True)
    progress.close()
    results = await client.pages("/v1/workflows/tests/results", {"run_id": run["id"]})
    tests = {
        test["id"]: test
        for test in await client.pages("/v1/workflows/tests", {"workflow_id": workflow_id})
    }
    surprises = 0
    print()
    for result in results:
        record = test_record(result, tests.get(result["test_id"]))
        line = f"  {record['verdict']:8} {record['test_name']}"
        if record["verdict"] == "failed":
            line += f": expected {record['expected']!r}, got {record['actual']!r}"
        elif record["verdict"] != "passed" and record["message"]:
            line += f": {record['message']}"
        print(line)
        meant = expected.get(result["test_id"])
        if meant is not None and meant.expected_verdict != record["verdict"]:
            surprises += 1
    print()
    print(f"See the run in the console: {client.console_url(run['id'])}")
    print("Gate CI on this workflow (it exits 1 here: a test failed and one is blocked):")
    command = [_testrun(), "run", "--workflow", WORKFLOW_NAME, "--junit", "report.xml"]
    print(f"  TESTRUN_URL={client.base_url} TESTRUN_API_KEY={key_hint} {shlex.join(command)}")
    if surprises:
        print(
            f"\n{surprises} tests did not end as the demo expects. If they are blocked with "
            f"function_not_allowed, the server does not allow {BLOCKS_MODULE}: start it with "
            f"scripts/run, or add {BLOCKS_MODULE} to FUNCTION_MODULES.",
            file=sys.stderr,
        )
        return 1
    return 0


def _testrun() -> str:
    """How to call `testrun` from here: the virtual environment's, or the one on PATH."""
    installed = Path(sys.executable).parent / "testrun"
    if installed.exists():
        relative = os.path.relpath(installed)
        return relative if not relative.startswith("..") else str(installed)
    return "testrun"


def _key(api_key: str | None, data_dir: Path) -> tuple[str, str]:
    """The API key to use, and how the printed command should refer to it."""
    keyfile = data_dir / "api-key"
    if api_key:
        return api_key, "<your API key>"
    if os.environ.get("TESTRUN_API_KEY"):
        return os.environ["TESTRUN_API_KEY"], "$TESTRUN_API_KEY"
    if keyfile.is_file():
        return keyfile.read_text().strip(), f"$(cat {shlex.quote(os.path.relpath(keyfile))})"
    bootstrap = os.environ.get("BOOTSTRAP_API_KEY", "")
    return bootstrap, "$BOOTSTRAP_API_KEY"


async def _main(url: str, api_key: str, key_hint: str) -> int:
    async with Client(url, api_key) as client:
        return await demo(client, key_hint=key_hint)


def main(*, url: str | None, api_key: str | None, host: str, port: int, data_dir: Path) -> int:
    """The `demo` command: 0 expected verdicts, 1 others, 2 the server cannot be used."""
    if host in ("0.0.0.0", "::", ""):  # noqa: S104  (listening everywhere: reach it locally)
        host = "127.0.0.1"
    base_url = url or os.environ.get("TESTRUN_URL") or f"http://{host}:{port}"
    key, hint = _key(api_key, data_dir)
    try:
        return asyncio.run(_main(base_url, key, hint))
    except CommandError as error:
        print(f"demo: error: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        return 130
