"""The runner: claims tests, executes their blocks, evaluates, records outcomes.

One runner runs inside `python -m service serve` by default; any number more run
as `python -m service worker` processes on the same database. Each holds at most
`RUNNER_CONCURRENCY` tests at a time (claimed and not yet recorded), and batches
its writes per run: one append starts every test it claimed of a run, one
append records every outcome that finished in the same short window.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import OrderedDict, defaultdict
from typing import Any

import aiohttp
import asyncpg
import msgspec
import structlog

from events.retry import Backoff, describe_error
from events.store import EventStore
from events.types import (
    AssertionFailure,
    AssertionResult,
    Metadata,
    NewEvent,
    TestBlocked,
    TestErrored,
    TestFailed,
    TestPassed,
    TestSnapshot,
)
from projections.fold import RunView
from projections.resources import TERMINAL
from service.config import Config
from service.execution import assertions, executors, outbound, queue
from service.metrics import Metrics
from service.registry import validation
from service.runs import outcomes as execution
from service.runs.outcomes import Claim, Outcome

log = structlog.get_logger("service.runner")

_IDLE_POLL_S = 0.25  # how often an idle runner looks for work without a NOTIFY
_FLUSH_EVERY_S = 0.02  # how long an outcome may wait to be batched with others
_KNOWN_RUNS = 32  # runs whose state a runner keeps between its decisions
_MOST_BACKOFF_S = 5.0  # the longest wait between tries while the database fails
_CONNECT_TIMEOUT_S = 10.0  # the LISTEN connection gives up connecting after this
_OUTCOMES: dict[str, type[TestPassed | TestFailed | TestBlocked]] = {
    "passed": TestPassed,
    "failed": TestFailed,
    "blocked": TestBlocked,
}


def runner_name() -> str:
    """A name for this runner in leases and events: host, process, and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Runner:
    """Execute queued tests until stopped.

    Args:
        pool: the database pool.
        config: the settings (concurrency, batch, timeouts, executors, judge).
        dsn: where to LISTEN for wake-ups (NOTIFY on `events`); polling covers
            a missed or impossible notification.
        metrics: where to count starts, outcomes, failed attempts and held
            tests (the serving app's `Metrics`); None counts nothing.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: Config,
        dsn: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.pool = pool
        self.store = EventStore(pool)
        self.config = config
        self.dsn = dsn
        self.metrics = metrics
        self._held_count = 0
        self.name = runner_name()
        self.metadata = Metadata(actor=f"runner:{self.name}")
        # A lease outlives the test's timeout by a margin: time to record the outcome.
        self.lease_s = config.test_timeout_s + config.lease_margin_s
        self._held = 0  # tests claimed and not yet recorded or released
        self._changed = asyncio.Event()  # a slot was freed, or work may have arrived
        self._outcomes: dict[str, list[NewEvent]] = defaultdict(list)
        self._flush_now = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._claimed: dict[str, Claim] = {}
        # The runs as this runner last wrote them: while nobody else has written
        # a run since, its next decision reads only what this state lacks.
        self._known: OrderedDict[str, RunView] = OrderedDict()

    @property
    def _held(self) -> int:
        return self._held_count

    @_held.setter
    def _held(self, value: int) -> None:
        # Every change of the count goes through here, so the gauge cannot drift;
        # by difference, so runners sharing one `Metrics` add up.
        if self.metrics is not None:
            self.metrics.tests_held.inc(value - self._held_count)
        self._held_count = value

    def _remember(self, run_id: str, view: RunView | None) -> None:
        if view is None or isinstance(view.run.lifecycle, TERMINAL):
            self._known.pop(run_id, None)
            return
        self._known[run_id] = view
        self._known.move_to_end(run_id)
        while len(self._known) > _KNOWN_RUNS:
            self._known.popitem(last=False)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and execute until `stop` is set; then finish or release what is held."""
        timeout = aiohttp.ClientTimeout(total=self.config.test_timeout_s)
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            # Blocks call only public or allowed addresses (ALLOWED_OUTBOUND_HOSTS).
            outbound.client_session(self.config.allowed_outbound_hosts, timeout=timeout) as guarded,
        ):
            self._settings = executors.ExecutorSettings(
                session=guarded,
                block_runtime_url=self.config.block_runtime_url,
                function_modules=self.config.function_modules,
                max_answer_bytes=self.config.max_answer_bytes,
                default_timeout_s=self.config.test_timeout_s,
            )
            self._services = assertions.AssertionServices(
                judge_url=self.config.judge_url,
                embeddings_url=self.config.embeddings_url,
                session=session,
            )
            listener = asyncio.create_task(self._listen_loop(stop))
            flusher = asyncio.create_task(self._flush_loop())
            log.info(
                "runner_started", worker=self.name, concurrency=self.config.runner_concurrency
            )
            try:
                await self._claim_loop(stop)
            finally:
                await self._drain()
                flusher.cancel()
                listener.cancel()
                await asyncio.gather(flusher, listener, return_exceptions=True)
                await self._flush()
                log.info("runner_stopped", worker=self.name)

    async def _listen_loop(self, stop: asyncio.Event) -> None:
        """Hold a LISTEN connection for wake-ups; when it breaks, connect again (with backoff).

        Only a hint: while there is none, the claim loop polls every `_IDLE_POLL_S`.
        """
        if self.dsn is None:
            return
        backoff = Backoff(first_s=_IDLE_POLL_S, most_s=_MOST_BACKOFF_S)
        interrupted = False
        while not stop.is_set():
            lost = asyncio.Event()
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT_S)
                conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await conn.add_listener("events", lambda *_: self._changed.set())
                if backoff.failures or interrupted:
                    log.info("runner_listening_again", worker=self.name)
                backoff.reset()
                interrupted = False
                # Work may have been queued while nobody listened.
                self._changed.set()
                await _first(stop.wait(), lost.wait())
                if not stop.is_set():
                    interrupted = True
                    log.warning("runner_listen_lost", worker=self.name)
            except Exception as error:  # whatever it is, retry later
                delay = backoff.next()
                log.warning("runner_listen_failed", error=describe_error(error), retry_in_s=delay)
                await _first(stop.wait(), asyncio.sleep(delay))
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff(first_s=_IDLE_POLL_S, most_s=_MOST_BACKOFF_S)
        while not stop.is_set():
            free = self.config.runner_concurrency - self._held
            claims: list[Claim] = []
            if free > 0:
                try:
                    claims = await queue.claim(
                        self.pool, self.name, min(free, self.config.runner_batch), self.lease_s
                    )
                except Exception as error:  # the runner never exits on an error
                    # PostgreSQL restarting, unreachable, or too slow: try again
                    # later, waiting longer each time, never spinning.
                    delay = backoff.next()
                    log.warning(
                        "runner_claim_failed", error=describe_error(error), retry_in_s=delay
                    )
                    await _first(stop.wait(), asyncio.sleep(delay))
                    continue
                if backoff.failures:
                    log.info("runner_claim_recovered", failures=backoff.failures)
                backoff.reset()
            if claims:
                self._held += len(claims)
                await self._start(claims)
                continue
            self._changed.clear()
            await _first(stop.wait(), self._changed.wait(), within_s=_IDLE_POLL_S)

    async def _start(self, claims: list[Claim]) -> None:
        by_run: dict[str, list[Claim]] = defaultdict(list)
        for claim in claims:
            by_run[claim.run_id].append(claim)
        for run_id, run_claims in by_run.items():
            try:
                execute, after = await execution.start(
                    self.pool,
                    self.store,
                    run_id,
                    run_claims,
                    runner=self.name,
                    max_attempts=self.config.max_attempts,
                    metadata=self.metadata,
                    known=self._known.get(run_id),
                )
                self._remember(run_id, after)
            except Exception as error:  # the runner never exits on an error
                # Nothing of these claims runs here: hand them back at once, or,
                # if even that fails, their leases run out and they are claimed again.
                log.warning("runner_start_failed", run_id=run_id, error=describe_error(error))
                self._known.pop(run_id, None)
                execute = []
                await self._give_back(run_claims, 0)
            self._held -= len(run_claims) - len(execute)
            if self.metrics is not None:
                self.metrics.tests_started.inc(len(execute))
            for claim in execute:
                self._claimed[claim.result_id] = claim
                task = asyncio.create_task(self._execute(claim))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        self._changed.set()

    async def _execute(self, claim: Claim) -> None:
        try:
            outcome: Outcome = await self._evaluate(claim.snapshot)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # an infrastructure failure: retry it
            if self.metrics is not None:
                self.metrics.attempt_failures.inc()
            log.warning(
                "test_attempt_failed",
                result_id=claim.result_id,
                attempt=claim.attempt,
                error=f"{type(error).__name__}: {error}",
            )
            if claim.attempt < self.config.max_attempts:
                await self._release(claim, self.config.retry_backoff_s * 2 ** (claim.attempt - 1))
                return
            outcome = TestErrored(
                result_id=claim.result_id,
                test_id=claim.snapshot.test_id,
                message=f"infrastructure error after {claim.attempt} attempts:"
                f" {type(error).__name__}",
                attempts=claim.attempt,
            )
        # The outcome happened now, whenever the batch it joins is recorded.
        self._outcomes[claim.run_id].append(NewEvent(event=outcome, metadata=self.metadata))
        if sum(len(v) for v in self._outcomes.values()) >= self.config.runner_batch:
            self._flush_now.set()

    async def _evaluate(self, task: TestSnapshot) -> Outcome:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.test_timeout_s):
                outputs = await executors.execute(
                    task.block_id,
                    task.block_type,
                    task.block_config,
                    task.handle_inputs,
                    self._settings,
                )
        except executors.BlockExecutionError as failure:
            return _with_validation(
                task, _blocked(task, failure.message, failure.details, started)
            )
        except TimeoutError:
            message = f"the block did not finish within {self.config.test_timeout_s:g} s"
            return _with_validation(
                task, _blocked(task, message, {"timeout_s": self.config.test_timeout_s}, started)
            )
        result = await assertions.evaluate(task.assertion, outputs, self._services)
        return _with_validation(
            task,
            _OUTCOMES[result.outcome](
                result_id=task.result_id,
                test_id=task.test_id,
                handle_outputs=outputs,
                assertion_result=result,
                duration_ms=_elapsed_ms(started),
            ),
        )

    async def _release(self, claim: Claim, delay_s: float) -> None:
        self._claimed.pop(claim.result_id, None)
        await self._give_back([claim], delay_s)
        self._held -= 1
        self._changed.set()

    async def _give_back(self, claims: list[Claim], delay_s: float) -> bool:
        """Release the leases of `claims` (claimable again after `delay_s`); False if it failed."""
        if not claims:
            return True
        try:
            await queue.release_many(
                self.pool, [claim.result_id for claim in claims], self.name, delay_s
            )
        except Exception as error:  # the leases run out instead
            log.warning("runner_release_failed", tests=len(claims), error=describe_error(error))
            return False
        return True

    async def _flush_loop(self) -> None:
        backoff = Backoff(first_s=_FLUSH_EVERY_S * 5, most_s=_MOST_BACKOFF_S)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), timeout=_FLUSH_EVERY_S)
            self._flush_now.clear()
            if await self._flush():
                backoff.reset()
            else:
                # The outcomes are kept; wait longer each time the database fails.
                await asyncio.sleep(backoff.next())

    async def _flush(self) -> bool:
        """Record the outcomes waiting; False if some could not be (they are kept)."""
        if not self._outcomes:
            return True
        pending, self._outcomes = self._outcomes, defaultdict(list)
        results = await asyncio.gather(
            *(self._record(run_id, outcomes) for run_id, outcomes in pending.items()),
            return_exceptions=True,
        )
        recorded = True
        for (run_id, outcomes), result in zip(pending.items(), results, strict=True):
            if isinstance(result, BaseException):
                # Keep them for the next flush; if this process dies, the leases
                # run out. Recording again is safe: a decision on the run's
                # current state drops an outcome that was committed already.
                log.warning("runner_record_failed", run_id=run_id, error=describe_error(result))
                self._outcomes[run_id].extend(outcomes)
                recorded = False
                continue
            for outcome in outcomes:
                self._claimed.pop(execution.result_id_of(outcome), None)
            self._held -= len(outcomes)
            if self.metrics is not None:
                self.metrics.outcomes(outcomes)
        self._changed.set()
        return recorded

    async def _record(self, run_id: str, outcomes: list[NewEvent]) -> None:
        try:
            after = await execution.record(
                self.pool,
                self.store,
                run_id,
                outcomes,
                metadata=self.metadata,
                known=self._known.get(run_id),
            )
        except BaseException:
            self._known.pop(run_id, None)
            raise
        self._remember(run_id, after)

    async def _drain(self) -> None:
        """On stop: let running tests finish for a while, then give the rest back."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.config.shutdown_grace_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        finished = {
            execution.result_id_of(o) for outcomes in self._outcomes.values() for o in outcomes
        }
        unfinished = [c for c in self._claimed.values() if c.result_id not in finished]
        # Handed back claimable at once: another runner takes them without
        # waiting for the leases to run out.
        if await self._give_back(unfinished, 0):
            log.info("runner_released", worker=self.name, tests=len(unfinished))
        for claim in unfinished:
            self._claimed.pop(claim.result_id, None)
        self._held -= len(unfinished)


async def _first(*waits: Any, within_s: float | None = None) -> None:
    """Wait until the first of `waits` (coroutines) finishes, or `within_s`; cancel the rest."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _with_validation(task: TestSnapshot, outcome: Outcome) -> Outcome:
    """A blocked outcome says which of the saved test's validation issues made it so.

    The issues go in the failure's `details.validation_issues` and, one line
    each, in the result's `warnings`; other outcomes are left as they are.
    """
    if not isinstance(outcome, TestBlocked) or outcome.assertion_result is None:
        return outcome
    issues = validation.validate(task.block_type, task.block_config, task.assertion)
    failure = outcome.assertion_result.failure
    if not issues or failure is None:
        return outcome
    failure = msgspec.structs.replace(
        failure,
        message=f"{failure.message} (the saved test is invalid: {validation.describe(issues)})",
        details={**failure.details, "validation_issues": msgspec.to_builtins(issues)},
    )
    return msgspec.structs.replace(
        outcome,
        assertion_result=msgspec.structs.replace(outcome.assertion_result, failure=failure),
        warnings=[*outcome.warnings, *(f"{i.path}: {i.code}: {i.message}" for i in issues)],
    )


def _blocked(
    task: TestSnapshot, message: str, details: dict[str, Any] | None, started: float
) -> TestBlocked:
    """The outcome of a test whose block failed to execute."""
    condition = task.assertion.get("condition") or {}
    return TestBlocked(
        result_id=task.result_id,
        test_id=task.test_id,
        assertion_result=AssertionResult(
            assertion_id=str(task.assertion.get("id") or ""),
            condition_kind=str(condition.get("kind", "")),
            outcome="blocked",
            assertion_label=task.assertion.get("label"),
            failure=AssertionFailure(
                code="block_execution_failed", message=message, details=details or {}
            ),
        ),
        duration_ms=_elapsed_ms(started),
    )
