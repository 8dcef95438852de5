-- (stream_id, version) is the events' primary key; global_position loses its index.
--
-- Every appended event paid for four index insertions: global_position (the old
-- primary key), event_id (idempotency), (stream_id, version) (versions without
-- gaps or duplicates) and (transaction_id, global_position) (read_all's commit
-- order). Nothing looks an event up by global_position alone: readers go by
-- stream and version, or by (transaction_id, global_position) in commit order.
-- So its index was pure write cost; dropping it saves one index insertion per
-- event.
--
-- global_position stays an identity column (GENERATED ALWAYS, so nobody writes
-- it by hand): its values come from the identity sequence, which never hands out
-- the same value twice, so it stays unique by construction without an index.
-- The (transaction_id, global_position) index still serves every query that
-- names it.
--
-- The primary key keeps the name events_pkey; a duplicate stream version now
-- violates it (it used to violate events_stream_version_key).

ALTER TABLE events
    DROP CONSTRAINT events_pkey,
    DROP CONSTRAINT events_stream_version_key,
    ADD CONSTRAINT events_pkey PRIMARY KEY (stream_id, version);
