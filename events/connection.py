"""Connection set-up for the store's readers and writers: the wire codecs.

`json` and `jsonb` travel as raw JSON bytes (msgspec decodes payloads without
an intermediate `str` or `dict`), and `timestamptz` is decoded through a small
cache. Every connection that reads or writes events is set up by
`init_connection` (the service's pool uses it as its `init`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg


async def init_connection(conn: asyncpg.Connection) -> None:
    """Set up a connection for the store: `json` and `jsonb` travel as raw JSON bytes.

    Use it as the pool's `init` so msgspec decodes payloads without an
    intermediate `str` or `dict`. (Events and read models are `json`, whose
    binary form is the text itself; the registry's few `jsonb` columns add a
    version byte.)
    """
    await conn.set_type_codec(
        "json", schema="pg_catalog", encoder=_json_encode, decoder=bytes, format="binary"
    )
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        format="binary",
    )
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=_timestamp_encode,
        decoder=_TIMESTAMPS.__getitem__,
        format="tuple",
    )


def _json_encode(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def _jsonb_encode(value: bytes | str) -> bytes:
    # The binary jsonb format is a version byte (1) followed by the JSON text.
    return b"\x01" + _json_encode(value)


def _jsonb_decode(value: bytes) -> bytes:
    return value[1:]


# timestamptz travels as microseconds since 2000-01-01 UTC (the "tuple" format).
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# PostgreSQL's ±infinity are datetime.max and datetime.min, as in asyncpg.
_INFINITY = 2**63 - 1
_INFINITIES = {
    (_INFINITY,): datetime.max.replace(tzinfo=UTC),
    (-_INFINITY - 1,): datetime.min.replace(tzinfo=UTC),
}
_ENCODED_INFINITIES = {datetime.max: (_INFINITY,), datetime.min: (-_INFINITY - 1,)}


class _Timestamps(dict[tuple[int], datetime]):
    """Decoded timestamps by their stored value; a value seen before costs a lookup.

    asyncpg builds a new datetime for every timestamp of every row, and that is
    the dearest part of decoding an event (two per event). Timestamps repeat:
    the events of one append share `recorded_at` (its default is
    `statement_timestamp()`, and an append is one statement), and a stream
    read again (by the read model, the audit, a follower) has the same ones.
    The hit path is the dict's own C lookup; at most 4,096 entries are kept.
    """

    def __missing__(self, key: tuple[int]) -> datetime:
        if len(self) >= 4096:
            self.clear()
        found = _INFINITIES.get(key)
        if found is None:
            found = _PG_EPOCH + key[0] * _MICROSECOND
        self[key] = found
        return found


_TIMESTAMPS = _Timestamps()


def _timestamp_encode(value: datetime) -> tuple[int]:
    if value.year in (1, 9999):
        infinity = _ENCODED_INFINITIES.get(value.replace(tzinfo=None))
        if infinity is not None:
            return infinity
    if value.tzinfo is None:  # asyncpg's rule: a naive datetime is local time
        value = value.astimezone()
    return ((value - _PG_EPOCH) // _MICROSECOND,)
