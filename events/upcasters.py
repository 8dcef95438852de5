"""The upcasters: how an older payload of an event type reads as the current one.

One function per type and version step, registered with `events.codec.upcaster`.
Stored events are never rewritten; every reader (the fold, the feed, replay,
rebuild, export) decodes through `events.codec.decode`, which applies these.
"""

from __future__ import annotations

from typing import Any

from events.codec import upcaster


@upcaster("test.started", 1)
def test_started_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    """Version 1 of `test.started` named the runner `runner`; version 2 calls it `worker`."""
    upgraded = dict(payload)
    upgraded["worker"] = upgraded.pop("runner", "")
    return upgraded
