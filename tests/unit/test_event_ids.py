"""Event ids: random version 4 UUIDs, never handed out twice, in threads or after a fork."""

from __future__ import annotations

import os
import threading
import uuid

import msgspec

from events.types import NewEvent, RunQueued, new_event_id


def test_ids_are_random_version_4_uuids() -> None:
    ids = [new_event_id() for _ in range(10_000)]  # many draws of 256
    assert len(set(ids)) == len(ids)
    assert all(isinstance(found, uuid.UUID) for found in ids)
    assert {found.version for found in ids} == {4}
    assert {found.variant for found in ids} == {uuid.RFC_4122}
    # The 122 random bits vary: every hex digit but the version's is used.
    assert len({str(found)[0] for found in ids}) == 16


def test_ids_compare_encode_and_hash_as_uuid_uuid_does() -> None:
    found = new_event_id()
    plain = uuid.UUID(str(found))
    assert found == plain
    assert hash(found) == hash(plain)
    assert msgspec.json.encode(found) == msgspec.json.encode(plain)
    assert msgspec.json.decode(msgspec.json.encode(found), type=uuid.UUID) == plain


def test_new_events_get_distinct_ids() -> None:
    events = [NewEvent(event=RunQueued()) for _ in range(1_000)]
    assert len({new.event_id for new in events}) == 1_000


def test_threads_never_share_an_id() -> None:
    drawn: list[list[uuid.UUID]] = [[] for _ in range(8)]
    start = threading.Barrier(len(drawn))

    def draw(into: list[uuid.UUID]) -> None:
        start.wait()
        into.extend(new_event_id() for _ in range(5_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [found for into in drawn for found in into]
    assert len(set(every)) == len(every) == 40_000


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_event_id()  # a batch is drawn: undrawn ids wait in this process
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.write(write, new_event_id().bytes)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        childs = uuid.UUID(bytes=pipe.read())
    os.waitpid(child, 0)
    # Without the fork hook, the child's next id is the parent's next one.
    assert childs != new_event_id()
