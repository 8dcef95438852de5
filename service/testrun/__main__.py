"""`testrun`: run a workflow's saved tests from CI and gate on the verdicts.

Exit codes a CI system can act on:

- 0: every test passed;
- 1: some test ended in a `--fail-on` verdict (default: failed, blocked, error);
- 2: a usage, configuration, authentication or connection error;
- 3: the run did not finish within `--timeout` (`--cancel-on-timeout` cancels it).

Ctrl-C while following a run cancels that run (saying so) and exits 130.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import signal
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from service.testrun.api import Client, CommandError, NotFoundError
from service.testrun.follow import TERMINAL, Progress, Tally, follow
from service.testrun.report import (
    VERDICTS,
    Outcome,
    as_json,
    counts,
    gate_verdict,
    summary,
    test_record,
    write_junit,
)

__all__ = ["default_idempotency_key", "main"]

EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 128 + signal.SIGINT
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 1800.0
# Environment variables that name one CI job (one attempt of it), by CI system.
CI_JOB_VARIABLES = (
    ("GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_JOB"),  # GitHub Actions
    ("CI_JOB_ID",),  # GitLab CI
    ("BUILDKITE_JOB_ID",),  # Buildkite
    ("CIRCLE_WORKFLOW_JOB_ID",),  # CircleCI
    ("SYSTEM_JOBID", "BUILD_BUILDID"),  # Azure Pipelines
    ("BUILD_TAG",),  # Jenkins
)
RUNS = "/v1/workflows/tests/runs"


def default_idempotency_key(env: Mapping[str, str], url: str, body: Mapping[str, Any]) -> str:
    """A key that is the same for a retried step of one CI job, and random outside CI.

    Within a CI job (its id from the CI system's variables) the key is derived
    from the job, the deployment and the request body: a retried `testrun run`
    gets the run the first attempt started. Elsewhere each call starts a run.
    """
    for names in CI_JOB_VARIABLES:
        if env.get(names[0]):
            job = "/".join(f"{name}={env.get(name, '')}" for name in names)
            material = b"\n".join(
                [job.encode(), url.encode(), msgspec.json.encode(body, order="sorted")]
            )
            return f"testrun-{hashlib.sha256(material).hexdigest()[:40]}"
    return f"testrun-{uuid.uuid4().hex}"


def _fail_on(text: str) -> frozenset[str]:
    chosen = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = chosen - {"failed", "blocked", "error"}
    if unknown:
        msg = f"unknown verdicts {sorted(unknown)}: choose among failed, blocked, error"
        raise argparse.ArgumentTypeError(msg)
    return chosen


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        msg = f"must be a positive number of seconds, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def build_parser() -> argparse.ArgumentParser:
    """`testrun run|status|results|cancel`, each with --url and --api-key."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument(
        "--url",
        default=os.environ.get("TESTRUN_URL", DEFAULT_URL),
        help=f"the service's base URL (default: TESTRUN_URL, else {DEFAULT_URL})",
    )
    connection.add_argument(
        "--api-key",
        default=os.environ.get("TESTRUN_API_KEY", ""),
        help="an API key (default: TESTRUN_API_KEY)",
    )
    parser = argparse.ArgumentParser(
        prog="testrun",
        description="Run a workflow's saved tests and gate CI on the verdicts.",
        epilog="Exit codes: 0 all passed; 1 a test ended in a --fail-on verdict; 2 usage, "
        "configuration, authentication or connection error; 3 the run did not finish "
        "within --timeout.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run", parents=[connection], help="start a run, follow it, report, exit 0/1/2/3"
    )
    run.add_argument("--workflow", required=True, help="the workflow's id (wf_...) or exact name")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--block", help="only the saved tests of this block")
    scope.add_argument("--test", help="only this saved test (wfnodetest_...)")
    run.add_argument(
        "--wait",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="follow the run to its end (default); --no-wait prints its id and exits 0",
    )
    run.add_argument(
        "--timeout",
        type=_timeout,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for the run (default {DEFAULT_TIMEOUT_S:.0f}); past it, exit 3",
    )
    run.add_argument(
        "--cancel-on-timeout", action="store_true", help="cancel the run when --timeout passes"
    )
    run.add_argument("--junit", type=Path, help="write a JUnit XML report to this file")
    run.add_argument("--json", action="store_true", help="print one JSON document (for machines)")
    run.add_argument(
        "--fail-on",
        type=_fail_on,
        default=frozenset({"failed", "blocked", "error"}),
        help="verdicts that make the exit code 1 (default: failed,blocked,error)",
    )
    run.add_argument(
        "--idempotency-key",
        default=os.environ.get("TESTRUN_IDEMPOTENCY_KEY"),
        help="the run's Idempotency-Key: the same key starts one run (default: derived from "
        "the CI job when a CI system's job id is set, else random)",
    )
    for name, text in (
        ("status", "a run's status and counts"),
        ("results", "a run's results, failures in detail"),
        ("cancel", "cancel a run"),
    ):
        command = commands.add_parser(name, parents=[connection], help=text)
        command.add_argument("run_id")
        if name != "cancel":
            command.add_argument("--json", action="store_true", help="JSON (for machines)")
    return parser


def _say(text: str, args: argparse.Namespace) -> None:
    """A line for people: on stdout, or on stderr when stdout carries --json."""
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    print(text, file=stream, flush=True)


async def _workflow(client: Client, reference: str) -> dict[str, Any]:
    """The workflow named by an id or an exact name; a CommandError that says what to do."""
    try:
        found: dict[str, Any] = await client.request(
            "GET", f"/v1/workflows/{quote(reference, safe='')}"
        )
        return found
    except NotFoundError:
        pass
    named = [w for w in await client.pages("/v1/workflows", {}) if w.get("name") == reference]
    if len(named) == 1:
        return dict(named[0])
    if named:
        ids = ", ".join(w["id"] for w in named)
        msg = f"{len(named)} workflows are named {reference!r} ({ids}): pass --workflow ID"
        raise CommandError(msg)
    msg = (
        f"workflow {reference!r} does not exist for this API key's organisation: check "
        "--workflow (a workflow id, wf_..., or an exact name; GET /v1/workflows lists them)"
    )
    raise CommandError(msg)


async def _tests_by_id(client: Client, workflow_id: str) -> dict[str, dict[str, Any]]:
    tests = await client.pages("/v1/workflows/tests", {"workflow_id": workflow_id})
    return {test["id"]: test for test in tests}


async def _results(client: Client, run_id: str) -> list[dict[str, Any]]:
    return await client.pages("/v1/workflows/tests/results", {"run_id": run_id})


async def _get_run(client: Client, run_id: str) -> dict[str, Any]:
    try:
        run: dict[str, Any] = await client.request("GET", f"{RUNS}/{run_id}")
    except NotFoundError as error:
        msg = f"run {run_id!r} does not exist for this API key's organisation ({error.message})"
        raise CommandError(msg) from error
    return run


async def _cancel(client: Client, run_id: str) -> str:
    """Cancel the run; returns its status afterwards."""
    try:
        run = await client.request("POST", f"{RUNS}/{run_id}/cancel")
    except NotFoundError:
        # Unknown, or already over: which one, the run itself says.
        run = await _get_run(client, run_id)
    return str(run["lifecycle"]["status"])


class _Started:
    """The run `testrun run` started, once it exists (what Ctrl-C cancels)."""

    run_id: str | None = None


async def _run(args: argparse.Namespace) -> int:
    started = _Started()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - asyncio.run always runs a task
        raise RuntimeError("no current task")
    interrupted = asyncio.Event()

    def on_interrupt() -> None:
        interrupted.set()
        task.cancel()

    async with Client(args.url, args.api_key) as client:
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signal.SIGINT, on_interrupt)
        try:
            return await _run_and_report(client, args, started)
        except asyncio.CancelledError:
            if not interrupted.is_set():
                raise
            task.uncancel()
        finally:
            # A second Ctrl-C stops at once.
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signal.SIGINT)
        sys.stderr.write("\n")
        if started.run_id is None:
            print(
                "Interrupted before the service confirmed a run: nothing to cancel.",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_INTERRUPTED
        print(f"Interrupted: cancelling run {started.run_id} ...", file=sys.stderr, flush=True)
        status = await _cancel(client, started.run_id)
        print(f"Run {started.run_id} is {status}.", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


async def _start(
    client: Client, args: argparse.Namespace, started: _Started
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the run (one per Idempotency-Key); returns the workflow and the new run."""
    if args.junit is not None and not args.wait:
        msg = "--junit needs the run's end: drop --no-wait"
        raise CommandError(msg)
    workflow = await _workflow(client, args.workflow)
    body: dict[str, Any] = {"workflow_id": workflow["id"]}
    if args.block:
        body["scope"] = {"type": "block", "block_id": args.block}
    elif args.test:
        body["scope"] = {"type": "single", "test_id": args.test}
    key = args.idempotency_key or default_idempotency_key(os.environ, client.base_url, body)
    try:
        run: dict[str, Any] = await client.request(
            "POST", RUNS, body=body, headers={"Idempotency-Key": key}
        )
    except NotFoundError as error:
        what = "block" if args.block else "test" if args.test else "workflow"
        msg = f"{error.message}: check --{what}"
        raise CommandError(msg) from error
    started.run_id = run["id"]
    _say(f"Run {run['id']}: {run['total_tests']} tests of workflow {workflow['name']!r}", args)
    _say(f"Console: {client.console_url(run['id'])}", args)
    return workflow, run


async def _run_and_report(client: Client, args: argparse.Namespace, started: _Started) -> int:
    workflow, run = await _start(client, args, started)
    console = client.console_url(run["id"])
    if not args.wait:
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(run) + b"\n")
        return EXIT_PASSED
    progress = Progress(sys.stderr)
    ending = "finished"
    try:
        async with asyncio.timeout(args.timeout):
            run = await follow(client, run, progress)
    except TimeoutError:
        ending = "timeout"
        run = await _get_run(client, run["id"])
    progress.update(Tally.of_run(run), final=True)
    progress.close()
    if ending == "timeout":
        _say(_timeout_note(args, Tally.of_run(run)), args)
        if args.cancel_on_timeout:
            # Before the report, so that it shows the run as it is left.
            status = await _cancel(client, run["id"])
            _say(f"Cancelled run {run['id']} after the timeout: it is {status}.", args)
            run = await _get_run(client, run["id"])
    results = await _results(client, run["id"])
    tests = await _tests_by_id(client, workflow["id"])
    if ending == "timeout":
        exit_code = EXIT_TIMEOUT
    elif any(gate_verdict(result) in args.fail_on for result in results):
        exit_code = EXIT_FAILED
    else:
        exit_code = EXIT_PASSED
    outcome = Outcome(
        run=run,
        results=results,
        tests=tests,
        workflow_name=str(workflow.get("name") or workflow["id"]),
        console_url=console,
        exit_code=exit_code,
        ending=ending,
    )
    if args.junit is not None:
        write_junit(outcome, args.junit)
    if args.json:
        sys.stdout.buffer.write(as_json(outcome, args.junit))
        sys.stdout.flush()
    else:
        _say(summary(outcome), args)
    if exit_code == EXIT_FAILED:
        tally = counts(results)
        gating = [verdict for verdict in VERDICTS if verdict in args.fail_on]
        ended = ", ".join(f"{tally[verdict]} {verdict}" for verdict in gating if tally[verdict])
        _say(f"Exit 1: {ended} (--fail-on {','.join(gating)}).", args)
    return exit_code


def _timeout_note(args: argparse.Namespace, tally: Tally) -> str:
    text = f"The run did not finish within {args.timeout:g} s ({tally.describe()})."
    if not args.cancel_on_timeout:
        text += " It goes on: see `testrun status RUN_ID`, or pass --cancel-on-timeout."
    return text


async def _status(args: argparse.Namespace) -> int:
    async with Client(args.url, args.api_key) as client:
        run = await _get_run(client, args.run_id)
        if args.json:
            sys.stdout.buffer.write(msgspec.json.encode(run) + b"\n")
            return EXIT_PASSED
        lifecycle = run["lifecycle"]
        reason = lifecycle.get("reason") or lifecycle.get("message")
        print(f"Run {run['id']}: {lifecycle['status']}" + (f" ({reason})" if reason else ""))
        print(f"  {Tally.of_run(run).describe()}")
        print(f"Console: {client.console_url(run['id'])}")
        return EXIT_PASSED


async def _results_command(args: argparse.Namespace) -> int:
    async with Client(args.url, args.api_key) as client:
        run = await _get_run(client, args.run_id)
        results = await _results(client, run["id"])
        tests = await _tests_by_id(client, run["workflow_id"])
        if args.json:
            records = [test_record(result, tests.get(result["test_id"])) for result in results]
            sys.stdout.buffer.write(msgspec.json.encode(records) + b"\n")
            return EXIT_PASSED
        outcome = Outcome(
            run=run,
            results=results,
            tests=tests,
            workflow_name=run["workflow_id"],
            console_url=client.console_url(run["id"]),
            exit_code=EXIT_PASSED,
            ending="finished" if run["lifecycle"]["status"] in TERMINAL else "running",
        )
        print(summary(outcome))
        return EXIT_PASSED


async def _cancel_command(args: argparse.Namespace) -> int:
    async with Client(args.url, args.api_key) as client:
        before = await _get_run(client, args.run_id)
        if before["lifecycle"]["status"] in TERMINAL:
            print(
                f"Run {args.run_id} is already {before['lifecycle']['status']}: nothing to cancel."
            )
            return EXIT_PASSED
        status = await _cancel(client, args.run_id)
        print(f"Run {args.run_id} is {status}.")
        return EXIT_PASSED


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    command = {
        "run": _run,
        "status": _status,
        "results": _results_command,
        "cancel": _cancel_command,
    }[args.command]
    try:
        return asyncio.run(command(args))
    except CommandError as error:
        print(f"testrun: error: {error}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
