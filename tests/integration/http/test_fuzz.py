"""Property-based fuzzing of every operation of `/openapi.json` with schemathesis.

Schemathesis reads our OpenAPI document and sends each operation requests
generated from its schemas: valid ones, and invalid ones (wrong types, missing
fields, out-of-range values, odd strings). Every answer must be a non-5xx,
with a status, content type, headers and body that the document declares for
it; an invalid request must be refused with a 4xx; an undeclared method must
be a 405 whose `Allow` lists exactly the declared ones.

Not checked: `positive_data_acceptance` (a valid-looking request accepted).
Some answers depend on more than the schema can say: a random string is not a
cursor this API issued (400), `before` with `after` (400), a `run_step` source
(422 `not_supported`), a run whose scope selects no test (422), a NUL deep in
free-form JSON that PostgreSQL cannot store (422).

It runs the schemathesis command line (the same run an outside suite would)
against a live app on a real database, deterministically. By default it
runs the examples, fuzzing and stateful phases with a few examples per
operation (well under a minute); `FUZZ_EXAMPLES=N` runs every phase, the
coverage phase's boundary values too, with N examples per operation.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import API_KEY, ApiClient

QUICK_EXAMPLES = 30
CHECKS_LEFT_OUT = "positive_data_acceptance"


def _command(url: str) -> list[str]:
    long_run = os.environ.get("FUZZ_EXAMPLES", "")
    examples = int(long_run) if long_run else QUICK_EXAMPLES
    phases = "examples,coverage,fuzzing,stateful" if long_run else "examples,fuzzing,stateful"
    return [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        url,
        "--header",
        f"Authorization: Bearer {API_KEY}",
        "--checks",
        "all",
        "--exclude-checks",
        CHECKS_LEFT_OUT,
        "--phases",
        phases,
        "--max-examples",
        str(examples),
        # The same cases on every run: a failure in CI reproduces locally.
        "--generation-deterministic",
        "--workers",
        "1",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--no-color",
    ]


async def test_every_operation_survives_schemathesis(client: ApiClient, tmp_path: Path) -> None:
    """No 5xx, no answer that breaks the schema, every invalid request a 4xx."""
    # Something to find: a workflow, a block, a saved test and a run.
    workflow = await client.workflow()
    block = await client.block(workflow["id"])
    await client.test(workflow["id"], block["id"])
    await client.call(
        "POST", "/v1/workflows/tests/runs", {"workflow_id": workflow["id"]}, expect=202
    )
    url = str(client.http.make_url("/openapi.json"))
    # In a thread: the app under test serves on this test's event loop meanwhile.
    done = await asyncio.to_thread(
        subprocess.run,
        _command(url),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
        # Schemathesis keeps a cache folder in its working directory.
        cwd=tmp_path,
        env={**os.environ, "NO_COLOR": "1"},
    )
    report = done.stdout[-20_000:] + done.stderr[-5_000:]
    assert 0 == done.returncode, report
    document = await client.call("GET", "/openapi.json", expect=200)
    operations = sum(len(methods) for methods in document["paths"].values())
    # Every operation but the one that serves the document itself, which
    # schemathesis leaves out of the run.
    tested = operations - 1
    assert f"Selected: {tested}/{tested}" in done.stdout, report
    assert f"Tested: {tested}" in done.stdout, report
