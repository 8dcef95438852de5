"""The event store: typed events, their codec and upcasters, append and reads, migrations.

How it keeps its promises:

- **Optimistic concurrency**: `append(stream_id, events, expected_version)` is
  one round trip: a single statement that moves the stream's row from the
  expected version (or creates it, for 0) and inserts the events after it. A
  concurrent appender waits for the row lock, re-checks the version against the
  committed row and writes nothing; the store then asks `append_events()`
  (events/sql), which answers an idempotent retry or raises `ConcurrencyError`.
  The primary key `(stream_id, version)` is the backstop.
- **Wake-ups after commit**: followers (async projections, runners, live event
  feeds) LISTEN on channel `events`. The NOTIFY is sent after the append
  commits, coalesced (one in flight per process), never inside the appending
  transaction: there it would hold PostgreSQL's cluster-wide notify lock through
  the WAL flush and serialise every commit. A wake-up is only a hint; followers
  re-read from their checkpoint and poll, so a lost one delays, never loses.
- **Idempotent append**: appending stored event ids again returns their
  original positions and writes nothing when it is the same append (same
  stream, all of its events in the same order, same type, payload and metadata);
  anything else is `IdempotencyConflictError`, and one id twice in an append is
  `DuplicateEventIdError`.
- **Feed order**: `read_all(after=checkpoint)` returns only events of
  transactions older than the oldest transaction still running, ordered by
  `(transaction_id, global_position)`: one order that every reader sees the
  same, nothing skipped or repeated, a reader waiting at most for the oldest
  open transaction, never on a timer. It is not true commit order (a
  transaction gets its id at its first write). Each stream's versions ascend in
  it: an append from a transaction older than the stream's last appender is
  refused (`StaleTransactionError`, retry in a new transaction). Transaction
  ids are cluster-wide, so a long transaction anywhere on the PostgreSQL
  cluster delays (never breaks) the feed; the service's connections set
  `idle_in_transaction_session_timeout` so an abandoned one cannot hold it long.
- **Immutability**: a trigger refuses UPDATE, DELETE and TRUNCATE on `events`.
- **Stored as written**: payloads and metadata are `json`, the exact bytes the
  service encoded, validated by PostgreSQL and never re-parsed (`jsonb` would
  parse each on write and render it on every read; nothing queries inside an
  event). The read models keep their rendered resources the same way.
- **No dual writes**: the read models (`test_runs`, `test_results`) are written
  in the append's transaction; each row carries the stream version it reflects.
"""
