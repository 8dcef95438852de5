"""testrun's pure parts: the JUnit report for every verdict, the summary, the idempotency key."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from service.testrun.__main__ import default_idempotency_key
from service.testrun.follow import Progress, Tally
from service.testrun.report import Outcome, junit_xml, summary
from tests.acceptance.junit import validated

RUN = {
    "id": "wftestrun_1",
    "workflow_id": "wf_1",
    "workflow_version_id": "draft_1",
    "lifecycle": {"status": "cancelled", "reason": "stopped"},
    "timing": {"created_at": "2026-12-06T05:00:00Z", "duration_ms": 1234567},
    "total_tests": 5,
}


def _result(n: int, verdict: str | None, status: str, **assertion: Any) -> dict[str, Any]:
    return {
        "id": f"wfnodetestrun_{n}",
        "test_id": f"wfnodetest_{n}",
        "block_id": "blk_1",
        "verdict": verdict,
        "lifecycle": {"status": status},
        "timing": {"duration_ms": 12},
        "assertion_result": assertion or None,
    }


RESULTS = [
    _result(1, "passed", "completed"),
    _result(
        2,
        "failed",
        "completed",
        expected_value="ACME",
        actual_value="Globex\x00\x1b[31m",
        failure={"code": "assertion_failed", "message": "'Globex' != 'ACME' \x07"},
    ),
    _result(
        3,
        "blocked",
        "completed",
        failure={"code": "block_execution_failed", "message": "the model is not reachable"},
    ),
    {**_result(4, None, "error"), "lifecycle": {"status": "error", "message": "runner lost"}},
    _result(5, None, "cancelled"),
]
TESTS = {
    "wfnodetest_2": {
        "name": 'globex <fails> & "quotes"',
        "assertion": {
            "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
            "condition": {"kind": "equals", "expected": "ACME"},
        },
    }
}


def _outcome() -> Outcome:
    return Outcome(
        run=RUN,
        results=RESULTS,
        tests=TESTS,
        workflow_name="Invoices",
        console_url="http://127.0.0.1:8080/console/runs/wftestrun_1",
        exit_code=1,
        ending="finished",
    )


def test_the_junit_report_of_every_verdict_is_valid(tmp_path: Path) -> None:
    """failed, blocked, error and cancelled tests, and characters XML cannot hold: still valid."""
    report = tmp_path / "junit.xml"
    report.write_bytes(junit_xml(_outcome()))

    root = validated(report)

    (suite,) = root.iter("testsuite")
    assert {"tests": "5", "failures": "1", "errors": "2", "skipped": "1", "time": "1234.567"} == {
        name: suite.get(name) for name in ("tests", "failures", "errors", "skipped", "time")
    }
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failure = cases['globex <fails> & "quotes"'].find("failure")
    assert failure is not None
    assert "'Globex' != 'ACME' " == failure.get("message")
    assert 'actual: "Globex\\u0000\\u001b[31m"' in (failure.text or "")
    errors = {case.get("name"): case.find("error") for case in cases.values()}
    assert "blocked/block_execution_failed" == errors["wfnodetest_3"].get("type")  # type: ignore[union-attr]
    assert "runner lost" == errors["wfnodetest_4"].get("message")  # type: ignore[union-attr]
    assert cases["wfnodetest_5"].find("skipped") is not None
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert "wftestrun_1" == properties["run_id"]
    assert {f"result_id.wfnodetest_{n}": f"wfnodetestrun_{n}" for n in range(1, 6)} == {
        k: v for k, v in properties.items() if k.startswith("result_id.")
    }


def test_the_summary_lists_what_did_not_pass() -> None:
    """Every test but the passing one, with assertion, expected, actual and message."""
    text = summary(_outcome())

    assert "Run wftestrun_1 of workflow 'Invoices': cancelled in 1234.6 s" in text
    assert "5 tests: 1 passed, 1 failed, 1 blocked, 2 error" in text
    assert "wfnodetest_1," not in text
    assert 'assertion  output-json-0 vendor.name: equals expected="ACME"' in text
    assert 'expected   "ACME"' in text
    assert "ERROR    wfnodetest_4" in text
    assert "CANCELLED wfnodetest_5" in text
    assert text.endswith("Console: http://127.0.0.1:8080/console/runs/wftestrun_1")


def test_the_idempotency_key_is_stable_within_a_ci_job_only() -> None:
    """Same job and request: same key; another attempt, job or request: another; no CI: random."""
    body = {"workflow_id": "wf_1"}
    url = "http://ci.example"
    github = {"GITHUB_RUN_ID": "7", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_JOB": "gate"}

    key = default_idempotency_key(github, url, body)

    assert key == default_idempotency_key(dict(github), url, dict(body))
    assert key != default_idempotency_key({**github, "GITHUB_RUN_ATTEMPT": "2"}, url, body)
    assert key != default_idempotency_key(github, url, {**body, "scope": {"type": "workflow"}})
    assert key != default_idempotency_key(github, "http://other", body)
    gitlab = default_idempotency_key({"CI_JOB_ID": "42"}, url, body)
    assert gitlab == default_idempotency_key({"CI_JOB_ID": "42"}, url, body)
    assert default_idempotency_key({}, url, body) != default_idempotency_key({}, url, body)
    assert all(len(k) <= 255 for k in (key, gitlab))


def test_plain_progress_lines_only_when_the_count_moves() -> None:
    """Not a terminal: a line when tests end (not more often than every 2 s), and the last."""
    stream = io.StringIO()
    progress = Progress(stream)

    progress.update(Tally(total=3))
    progress.update(Tally(total=3, passed=1))  # too soon after the first line
    progress.update(Tally(total=3, passed=1), final=True)
    progress.update(Tally(total=3, passed=1), final=True)  # no change: no line

    assert [
        "0/3 tests done: 0 passed, 0 failed, 0 blocked, 0 error",
        "1/3 tests done: 1 passed, 0 failed, 0 blocked, 0 error",
    ] == [line.rsplit(" (", 1)[0] for line in stream.getvalue().splitlines()]
