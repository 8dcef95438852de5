"""The peer for scripts/bench: the `eventsourcing` library's PostgreSQL persistence.

Its `PostgresApplicationRecorder` (what an eventsourcing `Application` stores
its aggregates' events with) on a `PostgresDatastore`, in the same patterns as
our event store: 16 writers on distinct aggregates appending 1 or 10 events per
transaction at the next versions (its optimistic concurrency is the primary key
on `(originator_id, originator_version)`), and 16 readers of a 10-event
aggregate (`select_events`). The library is synchronous: one thread per writer,
each with its own pooled connection. The payload is the same JSON bytes the
other rows store; the recorder stores them as given (no transcoding), and reads
return them as `StoredEvent`s, undecoded.

Installed from the `bench` extra (`pip install -e '.[bench]'`); scripts/bench
installs it when this workload runs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

WRITERS = 16


def _recorder(dsn: str, pool_size: int) -> Any:
    from eventsourcing.postgres import (  # noqa: PLC0415  (an optional dependency)
        PostgresApplicationRecorder,
        PostgresDatastore,
    )

    parts = urlsplit(dsn)
    datastore = PostgresDatastore(
        dbname=parts.path.lstrip("/"),
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password or ""),
        pool_size=pool_size,
        originator_id_type="text",
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def _threads(count: int, work: Callable[[int], None]) -> float:
    """Run `work(i)` in `count` threads released together; the seconds they took."""
    barrier = threading.Barrier(count + 1)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        barrier.wait()
        try:
            work(index)
        except BaseException as error:  # reported below, in the caller's thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - started


def append(dsn: str, per_transaction: int, total: int, payload: bytes) -> float:
    """16 writers on distinct aggregates, `per_transaction` events each insert: events/s."""
    from eventsourcing.persistence import StoredEvent  # noqa: PLC0415

    recorder = _recorder(dsn, WRITERS)
    each = total // WRITERS // per_transaction
    topic = "bench:TestStarted"

    def writer(index: int) -> None:
        version = 0
        for _ in range(each):
            recorder.insert_events(
                [
                    StoredEvent(
                        originator_id=f"p{index}",
                        originator_version=version + i + 1,
                        topic=topic,
                        state=payload,
                    )
                    for i in range(per_transaction)
                ]
            )
            version += per_transaction

    try:
        seconds = _threads(WRITERS, writer)
    finally:
        recorder.datastore.close()
    return each * per_transaction * WRITERS / seconds


def read(dsn: str, reads: int, payload: bytes) -> float:
    """16 readers of 10-event aggregates (`select_events`): reads/s."""
    from eventsourcing.persistence import StoredEvent  # noqa: PLC0415

    recorder = _recorder(dsn, WRITERS)
    for index in range(WRITERS):
        recorder.insert_events(
            [
                StoredEvent(
                    originator_id=f"r{index}",
                    originator_version=v,
                    topic="bench:TestStarted",
                    state=payload,
                )
                for v in range(1, 11)
            ]
        )
    each = reads // WRITERS

    def reader(index: int) -> None:
        for _ in range(each):
            if len(recorder.select_events(f"r{index}")) != 10:
                msg = "expected 10 events"
                raise RuntimeError(msg)

    try:
        seconds = _threads(WRITERS, reader)
    finally:
        recorder.datastore.close()
    return each * WRITERS / seconds
