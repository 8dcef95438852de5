"""`testrun`, the CI client, against a live server: every exit code, JUnit, idempotency, Ctrl-C.

The server runs `function` blocks from tests.run_functions, so runs really
execute: `invoice` passes or fails on its data, `broken` raises (the test is
`blocked`), `slow_invoice` waits `delay` seconds (for timeouts and Ctrl-C).
`testrun` is the console script the package installs, run as a CI job would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.acceptance.conftest import free_port, start_server, stop_server
from tests.acceptance.junit import validated

pytestmark = pytest.mark.slow

API_KEY = "rtk_testrun_acceptance_0123456789abcdef"
REPO_ROOT = Path(__file__).resolve().parents[2]
TESTRUN = Path(sys.executable).parent / "testrun"
# Variables a CI system sets for a job: `testrun` derives its Idempotency-Key from them.
CI_VARIABLES = (
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_JOB",
    "CI_JOB_ID",
    "BUILDKITE_JOB_ID",
    "CIRCLE_WORKFLOW_JOB_ID",
    "SYSTEM_JOBID",
    "BUILD_BUILDID",
    "BUILD_TAG",
    "TESTRUN_IDEMPOTENCY_KEY",
)


@dataclass(frozen=True)
class Server:
    """A live server and a small JSON client of its API."""

    base_url: str

    def call(self, method: str, path: str, body: Any = None, key: str = API_KEY) -> Any:
        """The decoded answer of one API call (raises on an error status)."""
        request = urllib.request.Request(  # noqa: S310  (a local test server)
            f"{self.base_url}{path}",
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Api-Key": key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def workflow(self, tests: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> str:
        """A workflow with one function block per entrypoint and the given saved tests.

        Each test is `(name, entrypoint, input data, condition)`; assertions
        look at `vendor.name` of `output-json-0`.
        """
        workflow_id: str = self.call("POST", "/v1/workflows", {"name": "Gate"})["id"]
        blocks: dict[str, str] = {}
        for name, entrypoint, data, condition in tests:
            if entrypoint not in blocks:
                block = self.call(
                    "POST",
                    "/v1/workflows/blocks",
                    {
                        "workflow_id": workflow_id,
                        "type": "function",
                        "config": {"entrypoint": entrypoint},
                    },
                )
                blocks[entrypoint] = block["id"]
            self.call(
                "POST",
                "/v1/workflows/tests",
                {
                    "workflow_id": workflow_id,
                    "name": name,
                    "target": {"type": "block", "block_id": blocks[entrypoint]},
                    "source": {
                        "type": "manual",
                        "handle_inputs": {"input": {"type": "json", "data": data}},
                    },
                    "assertion": {
                        "target": {"output_handle_id": "output-json-0", "path": "vendor.name"},
                        "condition": condition,
                    },
                },
            )
        return workflow_id

    def runs(self, workflow_id: str) -> list[dict[str, Any]]:
        """Every run of the workflow."""
        page = self.call("GET", f"/v1/workflows/tests/runs?workflow_id={workflow_id}&limit=100")
        runs: list[dict[str, Any]] = page["data"]
        return runs

    def run(self, run_id: str) -> dict[str, Any]:
        """One run."""
        run: dict[str, Any] = self.call("GET", f"/v1/workflows/tests/runs/{run_id}")
        return run


EQUALS_ACME = {"kind": "equals", "expected": "ACME"}
INVOICE = "tests.run_functions:invoice"
SLOW = "tests.run_functions:slow_invoice"
BROKEN = "tests.run_functions:broken"


@pytest.fixture
def server(database_url: str) -> Iterator[Server]:
    """A live server on a fresh database that runs tests.run_functions."""
    process, base_url = start_server(
        database_url,
        BOOTSTRAP_API_KEY=API_KEY,
        FUNCTION_MODULES="tests.run_functions",
        PYTHONPATH=str(REPO_ROOT),
        SHUTDOWN_GRACE_S="1",
    )
    yield Server(base_url)
    assert 0 == stop_server(process)


def _env(server: Server | None, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in CI_VARIABLES}
    env.pop("TESTRUN_URL", None)
    env.pop("TESTRUN_API_KEY", None)
    if server is not None:
        env.update(TESTRUN_URL=server.base_url, TESTRUN_API_KEY=API_KEY)
    env.update(extra)
    return env


def run_testrun(
    *args: str, server: Server | None, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the installed `testrun` command as a CI job would (no terminal)."""
    return subprocess.run(
        [str(TESTRUN), *args],
        env=_env(server, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _properties(root: Any) -> dict[str, str]:
    return {item.get("name"): item.get("value") for item in root.iter("property")}


def test_all_passing_exits_0_with_a_valid_junit_report(server: Server, tmp_path: Path) -> None:
    """Every test passes: exit 0, a summary, plain progress lines, and a JUnit report per schema."""
    workflow_id = server.workflow(
        [(f"acme {n}", INVOICE, {"name": "ACME"}, EQUALS_ACME) for n in range(3)]
    )
    report = tmp_path / "reports" / "junit.xml"

    done = run_testrun("run", "--workflow", workflow_id, "--junit", str(report), server=server)

    assert 0 == done.returncode, done.stdout + done.stderr
    (run,) = server.runs(workflow_id)
    assert "completed" == run["lifecycle"]["status"]
    assert f"Run {run['id']}" in done.stdout
    assert "3 tests: 3 passed, 0 failed, 0 blocked, 0 error" in done.stdout
    assert f"{server.base_url}/console/runs/{run['id']}" in done.stdout
    # Not a terminal: plain progress lines, no bar.
    assert "3/3 tests done: 3 passed" in done.stderr
    assert "\r" not in done.stderr
    root = validated(report)
    (suite,) = root.iter("testsuite")
    assert ("3", "0", "0") == (suite.get("tests"), suite.get("failures"), suite.get("errors"))
    assert {f"acme {n}" for n in range(3)} == {case.get("name") for case in suite.iter("testcase")}
    assert [] == list(suite.iter("failure")) + list(suite.iter("error"))
    properties = _properties(root)
    assert run["id"] == properties["run_id"]
    results = server.call("GET", f"/v1/workflows/tests/results?run_id={run['id']}")["data"]
    assert {f"result_id.{r['test_id']}": r["id"] for r in results} == {
        name: value for name, value in properties.items() if name.startswith("result_id.")
    }


def test_a_failing_test_exits_1_and_shows_expected_against_actual(
    server: Server, tmp_path: Path
) -> None:
    """A failed test: exit 1; the summary and the report carry assertion, expected, actual."""
    workflow_id = server.workflow(
        [
            ("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME),
            ("globex fails", INVOICE, {"name": "Globex"}, EQUALS_ACME),
        ]
    )
    report = tmp_path / "junit.xml"

    done = run_testrun("run", "--workflow", workflow_id, "--junit", str(report), server=server)

    assert 1 == done.returncode, done.stdout + done.stderr
    assert "2 tests: 1 passed, 1 failed, 0 blocked, 0 error" in done.stdout
    failed = done.stdout[done.stdout.index("FAILED") :]
    assert "globex fails" in failed
    assert 'assertion  output-json-0 vendor.name: equals expected="ACME"' in failed
    assert 'expected   "ACME"' in failed
    assert 'actual     "Globex"' in failed
    assert "message" in failed
    assert "acme passes" not in done.stdout  # passing tests are not listed
    assert "Exit 1: 1 failed (--fail-on failed,blocked,error)." in done.stdout
    root = validated(report)
    (failure,) = root.iter("failure")
    assert failure.get("message")
    assert 'actual: "Globex"' in (failure.text or "")
    (suite,) = root.iter("testsuite")
    assert ("2", "1", "0") == (suite.get("tests"), suite.get("failures"), suite.get("errors"))


def test_json_output_is_one_document_for_machines(server: Server) -> None:
    """--json: stdout is one JSON document (the people's lines go to stderr)."""
    workflow_id = server.workflow(
        [
            ("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME),
            ("globex fails", INVOICE, {"name": "Globex"}, EQUALS_ACME),
        ]
    )

    done = run_testrun("run", "--workflow", workflow_id, "--json", server=server)

    assert 1 == done.returncode, done.stderr
    document = json.loads(done.stdout)
    assert (1, "finished", "completed") == (
        document["exit_code"],
        document["ending"],
        document["status"],
    )
    assert {"passed": 1, "failed": 1, "blocked": 0, "error": 0} == document["counts"]
    (failing,) = [test for test in document["tests"] if test["verdict"] == "failed"]
    assert ("globex fails", "ACME", "Globex") == (
        failing["test_name"],
        failing["expected"],
        failing["actual"],
    )
    assert f"Run {document['run_id']}" in done.stderr


def test_a_blocked_test_exits_1_unless_fail_on_leaves_blocked_out(
    server: Server, tmp_path: Path
) -> None:
    """Blocked counts by default (exit 1); `--fail-on failed` lets it pass (exit 0)."""
    workflow_id = server.workflow(
        [
            ("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME),
            ("model down", BROKEN, {}, EQUALS_ACME),
        ]
    )
    report = tmp_path / "junit.xml"

    gated = run_testrun("run", "--workflow", workflow_id, "--junit", str(report), server=server)
    lenient = run_testrun("run", "--workflow", workflow_id, "--fail-on", "failed", server=server)

    assert 1 == gated.returncode, gated.stdout + gated.stderr
    blocked = gated.stdout[gated.stdout.index("BLOCKED") :]
    assert "model down" in blocked
    assert "the model is not reachable" in blocked
    assert "block_execution_failed" in blocked
    (error,) = validated(report).iter("error")
    assert "blocked/block_execution_failed" == error.get("type")
    assert "the model is not reachable" in (error.get("message") or "")
    assert 0 == lenient.returncode, lenient.stdout + lenient.stderr
    assert "1 passed, 0 failed, 1 blocked" in lenient.stdout
    assert 2 == len(server.runs(workflow_id))


def test_wrong_key_wrong_url_and_unknown_workflow_exit_2_saying_what_to_do(
    server: Server,
) -> None:
    """Configuration errors: exit 2, a message that names the fix, and no run started."""
    workflow_id = server.workflow([("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME)])

    wrong_key = run_testrun(
        "run", "--workflow", workflow_id, server=server, TESTRUN_API_KEY="rtk_not_a_key"
    )
    wrong_url = run_testrun(
        "run", "--workflow", workflow_id, "--url", f"http://127.0.0.1:{free_port()}", server=server
    )
    not_http = run_testrun(
        "run", "--workflow", workflow_id, "--url", "127.0.0.1:8080", server=server
    )
    no_key = run_testrun("run", "--workflow", workflow_id, server=server, TESTRUN_API_KEY="")
    unknown = run_testrun("run", "--workflow", "wf_does_not_exist", server=server)
    usage = run_testrun("run", server=server)

    assert 2 == wrong_key.returncode
    assert "refused the API key" in wrong_key.stderr
    assert "TESTRUN_API_KEY" in wrong_key.stderr
    assert 2 == wrong_url.returncode
    assert "cannot reach the service" in wrong_url.stderr
    assert "--url or TESTRUN_URL" in wrong_url.stderr
    assert 2 == not_http.returncode
    assert "is not an http(s) URL" in not_http.stderr
    assert 2 == no_key.returncode
    assert "no API key" in no_key.stderr
    assert 2 == unknown.returncode
    assert "workflow 'wf_does_not_exist' does not exist" in unknown.stderr
    assert "check --workflow" in unknown.stderr
    assert 2 == usage.returncode
    assert "--workflow" in usage.stderr
    assert [] == server.runs(workflow_id)


def test_a_run_past_its_timeout_exits_3_and_is_cancelled_only_when_asked(server: Server) -> None:
    """--timeout: exit 3 leaving the run going; with --cancel-on-timeout the run is cancelled."""
    workflow_id = server.workflow([("slow", SLOW, {"name": "ACME", "delay": 30}, EQUALS_ACME)])

    left = run_testrun("run", "--workflow", workflow_id, "--timeout", "1", "--json", server=server)
    cancelled = run_testrun(
        "run", "--workflow", workflow_id, "--timeout", "1", "--cancel-on-timeout", server=server
    )

    assert 3 == left.returncode, left.stdout + left.stderr
    left_run = json.loads(left.stdout)
    assert "timeout" == left_run["ending"]
    assert "did not finish within 1 s" in left.stderr
    assert server.run(left_run["run_id"])["lifecycle"]["status"] not in ("completed", "cancelled")
    assert 3 == cancelled.returncode, cancelled.stdout + cancelled.stderr
    assert "after the timeout: it is cancelled" in cancelled.stdout
    (cancelled_run,) = [run for run in server.runs(workflow_id) if run["id"] != left_run["run_id"]]
    assert "cancelled" == cancelled_run["lifecycle"]["status"]
    assert (
        "cancelled"
        == run_testrun("cancel", left_run["run_id"], server=server).stdout.split()[-1][:-1]
    )


def test_a_retried_run_with_the_same_idempotency_key_starts_one_run(server: Server) -> None:
    """The same key (given, or derived from a CI job's id) gives the same run; none: two runs."""
    workflow_id = server.workflow([("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME)])

    def run_id(**env: str) -> str:
        done = run_testrun("run", "--workflow", workflow_id, "--json", server=server, **env)
        assert 0 == done.returncode, done.stderr
        value: str = json.loads(done.stdout)["run_id"]
        return value

    keyed = [run_id(TESTRUN_IDEMPOTENCY_KEY="ci-step-42") for _ in range(2)]
    given = run_testrun(
        "run",
        "--workflow",
        workflow_id,
        "--idempotency-key",
        "ci-step-42",
        "--json",
        server=server,
    )
    in_ci_job = [run_id(CI_JOB_ID="4711") for _ in range(2)]
    another_job = run_id(CI_JOB_ID="4712")
    outside_ci = [run_id() for _ in range(2)]
    (test,) = server.call("GET", f"/v1/workflows/tests?workflow_id={workflow_id}")["data"]
    reused = run_testrun(
        "run",
        "--workflow",
        workflow_id,
        "--test",
        test["id"],
        "--idempotency-key",
        "ci-step-42",
        server=server,
    )

    assert keyed[0] == keyed[1] == json.loads(given.stdout)["run_id"]
    assert in_ci_job[0] == in_ci_job[1]
    assert len({keyed[0], in_ci_job[0], another_job, *outside_ci}) == 5
    assert 2 == reused.returncode
    assert "another --idempotency-key" in reused.stderr
    assert 5 == len(server.runs(workflow_id))


def test_ctrl_c_cancels_the_run_it_started(server: Server) -> None:
    """SIGINT while following: testrun says so, cancels its run, exits 130."""
    workflow_id = server.workflow([("slow", SLOW, {"name": "ACME", "delay": 30}, EQUALS_ACME)])
    process = subprocess.Popen(
        [str(TESTRUN), "run", "--workflow", workflow_id],
        env=_env(server),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Run wftestrun_"), first
        run_id = first.split()[1].rstrip(":")
        deadline = time.monotonic() + 10
        while server.run(run_id)["lifecycle"]["status"] != "running":
            assert time.monotonic() < deadline, "the run never started"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()

    assert 130 == process.returncode, out + err
    assert f"Interrupted: cancelling run {run_id} ..." in err
    assert f"Run {run_id} is cancelled." in err
    assert "cancelled" == server.run(run_id)["lifecycle"]["status"]


def test_status_results_and_cancel_commands(server: Server) -> None:
    """`testrun status`, `results [--json]` and `cancel` on runs it did not start."""
    workflow_id = server.workflow(
        [
            ("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME),
            ("globex fails", INVOICE, {"name": "Globex"}, EQUALS_ACME),
        ]
    )
    finished = json.loads(
        run_testrun("run", "--workflow", workflow_id, "--json", server=server).stdout
    )["run_id"]
    slow_workflow = server.workflow([("slow", SLOW, {"name": "ACME", "delay": 30}, EQUALS_ACME)])
    started = run_testrun("run", "--workflow", slow_workflow, "--no-wait", "--json", server=server)
    going = json.loads(started.stdout)["id"]
    going_before = server.run(going)["lifecycle"]["status"]

    status = run_testrun("status", finished, server=server)
    results = run_testrun("results", finished, server=server)
    results_json = run_testrun("results", finished, "--json", server=server)
    cancel = run_testrun("cancel", going, server=server)
    cancel_again = run_testrun("cancel", going, server=server)
    unknown = run_testrun("status", "wftestrun_nope", server=server)

    assert 0 == started.returncode
    assert f"Run {going}: 1 tests of workflow 'Gate'" in started.stderr
    assert going_before in ("pending", "queued", "running")
    assert 0 == status.returncode
    assert f"Run {finished}: completed" in status.stdout
    assert "2/2 tests done: 1 passed, 1 failed" in status.stdout
    assert 0 == results.returncode
    assert "FAILED   globex fails" in results.stdout
    records = json.loads(results_json.stdout)
    assert {"acme passes": "passed", "globex fails": "failed"} == {
        record["test_name"]: record["verdict"] for record in records
    }
    assert 0 == cancel.returncode
    assert f"Run {going} is cancelled." in cancel.stdout
    assert "cancelled" == server.run(going)["lifecycle"]["status"]
    assert 0 == cancel_again.returncode
    assert "already cancelled: nothing to cancel" in cancel_again.stdout
    assert 2 == unknown.returncode
    assert "run 'wftestrun_nope' does not exist" in unknown.stderr


def test_a_terminal_shows_a_progress_bar(server: Server) -> None:
    """On a terminal the progress is one redrawn bar, not lines."""
    import pty

    workflow_id = server.workflow(
        [(f"acme {n}", INVOICE, {"name": "ACME"}, EQUALS_ACME) for n in range(2)]
    )
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [str(TESTRUN), "run", "--workflow", workflow_id],
            env=_env(server),
            stdout=subprocess.PIPE,
            stderr=follower,
            text=True,
            timeout=60,
            check=False,
        )
        os.close(follower)
        follower = -1
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)

    assert 0 == done.returncode, done.stdout
    text = shown.decode()
    assert "\r[" in text
    assert "#" * 30 + "] 2/2 tests done: 2 passed" in text


@contextlib.asynccontextmanager
async def _serving(app: Any) -> AsyncIterator[int]:
    """A stand-in in front of the server (an aiohttp app) on a free port; its port."""
    from aiohttp import web

    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


async def _testrun_async(
    server: Server, *args: str, timeout_s: float = 60
) -> tuple[int | None, str, str]:
    """Run testrun without blocking the event loop (a stand-in is served on it)."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        str(TESTRUN),
        *args,
        env=_env(server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    return process.returncode, out.decode(), err.decode()


async def test_without_the_event_feed_testrun_polls_the_run(server: Server) -> None:
    """Behind a proxy that breaks Server-Sent Events, testrun polls and still reports right."""

    import aiohttp
    from aiohttp import web

    workflow_id = server.workflow(
        [
            ("acme passes", SLOW, {"name": "ACME", "delay": 1}, EQUALS_ACME),
            ("globex fails", INVOICE, {"name": "Globex"}, EQUALS_ACME),
        ]
    )
    seen: list[str] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        if request.path.endswith("/events") or not request.path.startswith("/v1/"):
            return web.Response(status=502, text="<h1>Bad Gateway</h1>", content_type="text/html")
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{server.base_url}{request.path_qs}",
                data=await request.read(),
                headers={
                    name: value
                    for name, value in request.headers.items()
                    if name in ("Api-Key", "Content-Type", "Idempotency-Key", "Accept")
                },
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    async with _serving(app) as port:
        url = f"http://127.0.0.1:{port}"
        code, out, err = await _testrun_async(
            server, "run", "--workflow", workflow_id, "--url", url
        )
        wrong_code, _, wrong = await _testrun_async(
            server, "status", "wftestrun_x", "--url", f"{url}/elsewhere"
        )

    assert 1 == code, out + err
    assert "2 tests: 1 passed, 1 failed, 0 blocked, 0 error" in out
    assert "2/2 tests done: 1 passed, 1 failed" in err
    (run,) = server.runs(workflow_id)
    assert any(request.endswith("/events") for request in seen)
    polls = [r for r in seen if r == f"GET /v1/workflows/tests/runs/{run['id']}"]
    assert len(polls) >= 2  # polled until the run ended (delay 1 s, a poll a second)
    assert 2 == wrong_code
    assert "not the JSON of this service's API: check --url" in wrong


async def test_a_broken_event_feed_is_resumed_with_last_event_id(server: Server) -> None:
    """A feed that ends after each event: testrun reconnects with Last-Event-ID, counts right."""

    import aiohttp
    from aiohttp import web

    workflow_id = server.workflow(
        [
            ("acme passes", INVOICE, {"name": "ACME"}, EQUALS_ACME),
            ("globex fails", INVOICE, {"name": "Globex"}, EQUALS_ACME),
            ("model down", BROKEN, {}, EQUALS_ACME),
        ]
    )
    resumed_from: list[str | None] = []
    headers = {"Api-Key": API_KEY}

    async def one_event_at_a_time(request: web.Request) -> web.StreamResponse:
        last = request.headers.get("Last-Event-ID")
        resumed_from.append(last)
        upstream_headers = {**headers, "Accept": "text/event-stream"}
        if last is not None:
            upstream_headers["Last-Event-ID"] = last
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{server.base_url}{request.path}", headers=upstream_headers) as upstream,
        ):
            received = b""
            async for chunk in upstream.content.iter_any():
                received += chunk
                if b"\n\n" in received:
                    break
        await response.write(received[: received.index(b"\n\n") + 2])
        await response.write_eof()
        return response

    async def forward(request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method,
                f"{server.base_url}{request.path_qs}",
                data=await request.read(),
                headers={**headers, "Content-Type": "application/json"},
            ) as answer,
        ):
            return web.Response(
                status=answer.status, body=await answer.read(), content_type=answer.content_type
            )

    app = web.Application()
    app.router.add_get("/v1/workflows/tests/runs/{run_id}/events", one_event_at_a_time)
    app.router.add_route("*", "/{tail:.*}", forward)
    async with _serving(app) as port:
        code, out, err = await _testrun_async(
            server,
            "run",
            "--workflow",
            workflow_id,
            "--url",
            f"http://127.0.0.1:{port}",
            timeout_s=90,
        )

    assert 1 == code, out + err
    assert "3/3 tests done: 1 passed, 1 failed, 1 blocked" in err
    assert "3 tests: 1 passed, 1 failed, 1 blocked, 0 error" in out
    # Resumed after each event, in order: 1, 2, ... (the run's stream versions).
    assert None is resumed_from[0]
    versions = [int(last) for last in resumed_from[1:] if last is not None]
    assert versions == list(range(1, len(versions) + 1))
    assert len(versions) >= 3
