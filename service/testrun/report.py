"""What a run's end says: a summary for people, JSON for machines, JUnit XML for CI systems."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Outcome", "gate_verdict", "junit_xml", "summary", "test_record"]

VERDICTS = ("passed", "failed", "blocked", "error")
# Characters XML 1.0 cannot carry, even escaped: dropped from messages and values.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_VALUE_CHARS = 300
_encode = msgspec.json.Encoder(order="sorted").encode


@dataclass(frozen=True)
class Outcome:
    """How `testrun run` ended, with everything its reports show."""

    run: dict[str, Any]
    results: list[dict[str, Any]]
    tests: dict[str, dict[str, Any]]  # saved tests by id (for names and assertions)
    workflow_name: str
    console_url: str
    exit_code: int
    ending: str  # finished (the run is terminal) or timeout


def gate_verdict(result: dict[str, Any]) -> str:
    """passed, failed or blocked; `error` for a test that could not complete (any reason)."""
    verdict = result.get("verdict")
    return verdict if verdict in ("passed", "failed", "blocked") else "error"


def _shown_verdict(result: dict[str, Any]) -> str:
    verdict = result.get("verdict")
    if verdict:
        return str(verdict)
    status = str(result["lifecycle"]["status"])
    return status if status in ("error", "cancelled") else "not finished"


def _json(value: Any) -> str:
    text = _encode(value).decode()
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 3] + "..."


def _assertion_text(test: dict[str, Any] | None, result: dict[str, Any]) -> str:
    """`output-json-0 total: number_compare eq 1250`, from the saved test when it still exists."""
    assertion = (test or {}).get("assertion") or {}
    condition = assertion.get("condition") or {}
    target = assertion.get("target") or {}
    kind = condition.get("kind") or (result.get("assertion_result") or {}).get("condition_kind")
    where = " ".join(
        str(part) for part in (target.get("output_handle_id"), target.get("path")) if part
    )
    fields = " ".join(
        f"{name}={_json(value)}" for name, value in condition.items() if name not in ("kind",)
    )
    return ": ".join(part for part in (where, " ".join(p for p in (kind, fields) if p)) if part)


def test_record(result: dict[str, Any], test: dict[str, Any] | None) -> dict[str, Any]:
    """One test's outcome, compact: what `--json` lists and the summary prints."""
    assertion_result = result.get("assertion_result") or {}
    failure = assertion_result.get("failure") or {}
    lifecycle = result.get("lifecycle") or {}
    message = failure.get("message") or lifecycle.get("message") or lifecycle.get("reason")
    return {
        "test_id": result["test_id"],
        "test_name": (test or {}).get("name") or result["test_id"],
        "result_id": result["id"],
        "block_id": result.get("block_id"),
        "verdict": _shown_verdict(result),
        "gate_verdict": gate_verdict(result),
        "assertion": _assertion_text(test, result),
        "expected": assertion_result.get("expected_value"),
        "actual": assertion_result.get("actual_value"),
        "code": failure.get("code"),
        "message": message,
        "duration_ms": (result.get("timing") or {}).get("duration_ms"),
    }


def counts(results: list[dict[str, Any]]) -> dict[str, int]:
    """Tests by gate verdict."""
    tally = dict.fromkeys(VERDICTS, 0)
    for result in results:
        tally[gate_verdict(result)] += 1
    return tally


def summary(outcome: Outcome) -> str:
    """The plain, short text a person reads at the end of `testrun run`."""
    run = outcome.run
    status = run["lifecycle"]["status"]
    tally = counts(outcome.results)
    duration = (run.get("timing") or {}).get("duration_ms")
    took = f" in {duration / 1000:.1f} s" if isinstance(duration, int) else ""
    lines = [
        f"Run {run['id']} of workflow {outcome.workflow_name!r}: {status}{took}",
        f"  {len(outcome.results)} tests: "
        + ", ".join(f"{tally[verdict]} {verdict}" for verdict in VERDICTS),
    ]
    for result in outcome.results:
        if gate_verdict(result) == "passed":
            continue
        record = test_record(result, outcome.tests.get(result["test_id"]))
        lines.append("")
        lines.append(f"{record['verdict'].upper():8} {record['test_name']}")
        lines.append(
            f"  test {record['test_id']}, block {record['block_id']}, result {record['result_id']}"
        )
        if record["assertion"]:
            lines.append(f"  assertion  {record['assertion']}")
        if record["verdict"] == "failed" or record["actual"] is not None:
            lines.append(f"  expected   {_json(record['expected'])}")
            lines.append(f"  actual     {_json(record['actual'])}")
        if record["message"]:
            code = f" ({record['code']})" if record["code"] else ""
            lines.append(f"  message    {record['message']}{code}")
    lines.append("")
    lines.append(f"Console: {outcome.console_url}")
    return "\n".join(lines)


def _clean(text: Any) -> str:
    return _NOT_XML.sub("", str(text))


def _seconds(milliseconds: Any) -> str:
    return f"{(milliseconds or 0) / 1000:.3f}"


def junit_xml(outcome: Outcome) -> bytes:
    """The run as JUnit XML: one testsuite, one testcase per saved test.

    Follows the widely read Jenkins `junit-10.xsd`: `failed` is a `<failure>`,
    `blocked` and tests that could not complete are an `<error>`, tests a
    cancel stopped are `<skipped>`. The run, the workflow and each test's
    result id are properties of the suite (the schema gives a testcase none);
    each testcase's `system-out` repeats its ids and the console link.
    """
    run = outcome.run
    tally = counts(outcome.results)
    skipped = sum(1 for result in outcome.results if _shown_verdict(result) == "cancelled")
    errors = str(tally["blocked"] + tally["error"] - skipped)
    root = ET.Element(
        "testsuites",
        name="testrun",
        tests=str(len(outcome.results)),
        failures=str(tally["failed"]),
        errors=errors,
        time=_seconds((run.get("timing") or {}).get("duration_ms")),
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=_clean(outcome.workflow_name),
        id=run["id"],
        tests=str(len(outcome.results)),
        failures=str(tally["failed"]),
        errors=errors,
        skipped=str(skipped),
        time=_seconds((run.get("timing") or {}).get("duration_ms")),
        timestamp=str((run.get("timing") or {}).get("created_at", "")),
        url=outcome.console_url,
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run_id", run["id"]),
        ("workflow_id", run.get("workflow_id", "")),
        ("workflow_version_id", run.get("workflow_version_id", "")),
        ("run_status", run["lifecycle"]["status"]),
        ("console_url", outcome.console_url),
    ):
        ET.SubElement(properties, "property", name=name, value=_clean(value))
    for result in outcome.results:
        ET.SubElement(
            properties, "property", name=f"result_id.{result['test_id']}", value=result["id"]
        )
    for result in outcome.results:
        record = test_record(result, outcome.tests.get(result["test_id"]))
        case = ET.SubElement(
            suite,
            "testcase",
            name=_clean(record["test_name"]),
            classname=_clean(f"{run.get('workflow_id', '')}.{record['block_id']}"),
            time=_seconds(record["duration_ms"]),
        )
        detail = "\n".join(
            line
            for line in (
                f"assertion: {record['assertion']}" if record["assertion"] else "",
                f"expected: {_json(record['expected'])}",
                f"actual: {_json(record['actual'])}",
                f"message: {record['message']}" if record["message"] else "",
            )
            if line
        )
        message = _clean(record["message"] or f"the test is {record['verdict']}")
        if record["verdict"] == "failed":
            ET.SubElement(
                case, "failure", message=message, type=record["code"] or "failed"
            ).text = _clean(detail)
        elif record["verdict"] == "cancelled":
            ET.SubElement(case, "skipped", message=message, type="cancelled")
        elif record["gate_verdict"] != "passed":
            kind = (
                record["verdict"]
                if record["code"] is None
                else f"{record['verdict']}/{record['code']}"
            )
            ET.SubElement(case, "error", message=message, type=_clean(kind)).text = _clean(detail)
        ET.SubElement(case, "system-out").text = (
            f"test_id: {record['test_id']}\nresult_id: {record['result_id']}\n"
            f"run_id: {run['id']}\nconsole: {outcome.console_url}\n"
        )
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_junit(outcome: Outcome, path: Path) -> None:
    """Write the JUnit report (its folder is made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(junit_xml(outcome))


def as_json(outcome: Outcome, junit: Path | None) -> bytes:
    """The `--json` document: the run, each test's record, the counts and the exit code."""
    document: bytes = msgspec.json.encode(
        {
            "exit_code": outcome.exit_code,
            "ending": outcome.ending,
            "run_id": outcome.run["id"],
            "status": outcome.run["lifecycle"]["status"],
            "console_url": outcome.console_url,
            "counts": counts(outcome.results),
            "tests": [
                test_record(result, outcome.tests.get(result["test_id"]))
                for result in outcome.results
            ],
            "junit": str(junit) if junit is not None else None,
            "run": outcome.run,
        }
    )
    return document + b"\n"
