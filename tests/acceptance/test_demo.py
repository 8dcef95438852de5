"""`python -m service demo` on a fresh database ends with the verdicts it promises.

The server allows the demo's functions (`service.ops.demo_blocks`), as
`scripts/run` does; the demo talks to it over HTTP only.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.ops.demo import DEMO_TESTS, WORKFLOW_NAME
from tests.acceptance.conftest import start_server, stop_server

pytestmark = pytest.mark.slow

API_KEY = "rtk_demo_acceptance_0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _get(base_url: str, path: str) -> Any:
    request = urllib.request.Request(f"{base_url}{path}", headers={"Api-Key": API_KEY})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


def _demo(base_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "demo", "--url", base_url, "--api-key", API_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )


@pytest.fixture
def demo_server(database_url: str) -> Iterator[str]:
    """A live server on a fresh database that allows the demo's functions."""
    process, base_url = start_server(
        database_url, BOOTSTRAP_API_KEY=API_KEY, FUNCTION_MODULES="service.ops.demo_blocks"
    )
    yield base_url
    assert 0 == stop_server(process)


def test_the_demo_ends_with_the_expected_verdicts(demo_server: str) -> None:
    """5 passed, 1 failed on purpose, 1 blocked with a readable reason; a rerun reuses it all."""
    first = _demo(demo_server)
    second = _demo(demo_server)

    assert 0 == first.returncode, first.stdout + first.stderr
    assert f"Made the workflow {WORKFLOW_NAME!r}" in first.stdout
    (workflow,) = _get(demo_server, "/v1/workflows")["data"]
    runs = _get(demo_server, f"/v1/workflows/tests/runs?workflow_id={workflow['id']}")["data"]
    first_run = runs[-1]
    assert "completed" == first_run["lifecycle"]["status"]
    results = _get(demo_server, f"/v1/workflows/tests/results?run_id={first_run['id']}&limit=100")
    verdicts = Counter(result["verdict"] for result in results["data"])
    assert {"passed": 5, "failed": 1, "blocked": 1} == verdicts
    tests = _get(demo_server, f"/v1/workflows/tests?workflow_id={workflow['id']}&limit=100")
    names = {test["id"]: test["name"] for test in tests["data"]}
    expected = {test.name: test.expected_verdict for test in DEMO_TESTS}
    assert expected == {names[r["test_id"]]: r["verdict"] for r in results["data"]}
    (blocked,) = [r for r in results["data"] if r["verdict"] == "blocked"]
    failure = blocked["assertion_result"]["failure"]
    assert "block_execution_failed" == failure["code"]
    assert "the document has no text layer" in failure["message"]
    (failed,) = [r for r in results["data"] if r["verdict"] == "failed"]
    assert (1250.0, 1205.0) == (
        failed["assertion_result"]["expected_value"],
        failed["assertion_result"]["actual_value"],
    )
    assert f"{demo_server}/console/runs/{first_run['id']}" in first.stdout
    assert f"TESTRUN_URL={demo_server}" in first.stdout
    assert "testrun run --workflow 'Invoice demo' --junit report.xml" in first.stdout
    assert "  failed   Total matches the purchase order" in first.stdout
    assert "expected 1250.0, got 1205.0" in first.stdout
    # A second demo reuses the workflow, its blocks and its tests, and runs again.
    assert 0 == second.returncode, second.stdout + second.stderr
    assert f"Reusing the workflow {WORKFLOW_NAME!r} ({workflow['id']})" in second.stdout
    assert 1 == len(_get(demo_server, "/v1/workflows")["data"])
    assert len(DEMO_TESTS) == len(names)
    assert 2 == len(runs)


def test_the_demo_says_what_to_allow_when_its_functions_are_not(database_url: str) -> None:
    """On a server that does not allow the demo's module: exit 1 and the fix."""
    process, base_url = start_server(database_url, BOOTSTRAP_API_KEY=API_KEY)
    try:
        done = _demo(base_url)
    finally:
        assert 0 == stop_server(process)

    assert 1 == done.returncode, done.stdout + done.stderr
    assert "6 tests did not end as the demo expects" in done.stderr
    assert "add service.ops.demo_blocks to FUNCTION_MODULES" in done.stderr
