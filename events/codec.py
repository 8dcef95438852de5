"""Encoding events for storage, and decoding them back through the upcasters.

A stored event is `(type, schema_version, data)`. When `schema_version` is the
current version of its type, `data` is decoded straight into the typed struct
(one pass, no intermediate dict). An older payload goes through the registered
upcasters, one version step at a time, then is converted to the current struct.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from events.types import EVENT_TYPES, RunEvent, type_of

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}
_ENCODER = msgspec.json.Encoder()
# A payload at its type's current schema version (the class's `schema_version`)
# decodes straight into its struct. Hot loops (`events.store.recorded_events`)
# make `decode`'s check inline and call this.
decode_current = msgspec.json.Decoder(RunEvent).decode


class UnknownEventTypeError(ValueError):
    """A stored event's type is not one this release knows."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that rewrites a `from_version` payload into `from_version + 1`.

    Args:
        event_type: the stable tag of the event type (`"run.created"`).
        from_version: the schema version the function reads.
    """

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


def unregister_upcaster(event_type: str, from_version: int) -> None:
    """Remove a registered upcaster (tests use it to restore the registry)."""
    _UPCASTERS.pop((event_type, from_version), None)


def current_schema_version(event_type: str) -> int:
    """The schema version this release writes for an event type."""
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventTypeError(event_type)
    return cls.schema_version


def encode(event: RunEvent) -> tuple[str, int, bytes]:
    """Return `(type, schema_version, json_bytes)` for storing an event."""
    event_type = type_of(event)
    return event_type, type(event).schema_version, _ENCODER.encode(event)


def decode(event_type: str, schema_version: int, data: bytes | str) -> RunEvent:
    """Decode a stored event into its current typed struct, upcasting if it is older.

    Args:
        event_type: the stored `type` column.
        schema_version: the stored `schema_version` column.
        data: the stored JSON payload.
    """
    cls = EVENT_TYPES.get(event_type)
    if cls is not None and cls.schema_version == schema_version:
        decoded: RunEvent = decode_current(data)
        return decoded
    current = current_schema_version(event_type)
    payload: dict[str, Any] = msgspec.json.decode(data)
    for version in range(schema_version, current):
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            msg = f"no upcaster for {event_type} from schema version {version}"
            raise UnknownEventTypeError(msg)
        payload = step(payload)
    payload["type"] = event_type
    converted: RunEvent = msgspec.convert(payload, RunEvent)
    return converted


# The registered upcasters (imported last: they use `upcaster` above).
from events import upcasters as _upcasters  # noqa: E402, F401
