-- The event store: one row per stream, one row per event, never updated or deleted.

CREATE TABLE streams (
    stream_id  text PRIMARY KEY,
    version    bigint NOT NULL CHECK (version >= 1),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    stream_id       text NOT NULL,
    version         bigint NOT NULL CHECK (version >= 1),
    type            text NOT NULL,
    schema_version  integer NOT NULL DEFAULT 1,
    data            jsonb NOT NULL,
    metadata        jsonb NOT NULL DEFAULT '{}',
    event_id        uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The writing transaction's id: visible-at-commit order for readers of
    -- everything (see read_all in events/store.py for why global_position alone
    -- is not enough).
    transaction_id  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (global_position),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);

CREATE INDEX events_commit_order_idx ON events (transaction_id, global_position);

-- History is immutable: refuse UPDATE, DELETE and TRUNCATE of events.
CREATE FUNCTION events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'EV003', HINT = 'append a new event instead';
END
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();

-- Append events to one stream in one round trip.
--
-- p_expected_version: the stream's current version (0 for a new stream), or
-- NULL to append at the end whatever the version. A mismatch raises EV001
-- "Wrong expected version", which the client maps to ConcurrencyError.
--
-- Idempotency: when any of the event ids is already stored, the call answers the
-- stored positions of all the events (EV002 when they are not exactly the same
-- events of the same stream) and writes nothing.
--
-- Concurrency: the conditional UPDATE (or INSERT ... ON CONFLICT DO NOTHING of
-- a new stream) takes the stream row's lock; a concurrent appender waits for
-- it, then re-checks the version against the committed row and fails. The
-- UNIQUE (stream_id, version) constraint is the backstop.
CREATE FUNCTION append_events(
    p_stream_id        text,
    p_expected_version bigint,
    p_event_ids        uuid[],
    p_types            text[],
    p_schema_versions  integer[],
    p_data             jsonb[],
    p_metadata         jsonb[],
    p_occurred_at      timestamptz[]
) RETURNS TABLE (global_position bigint, version bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    n             integer := cardinality(p_event_ids);
    base_version  bigint;
    stored        integer;
    same_stream   boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY (p_event_ids)) THEN
        SELECT count(*), bool_and(e.stream_id = p_stream_id)
          INTO stored, same_stream
          FROM events e WHERE e.event_id = ANY (p_event_ids);
        IF stored <> n OR NOT same_stream THEN
            RAISE EXCEPTION 'Idempotency conflict: % of % events already stored (Stream: %)',
                stored, n, p_stream_id USING ERRCODE = 'EV002';
        END IF;
        RETURN QUERY
            SELECT e.global_position, e.version FROM events e
             WHERE e.event_id = ANY (p_event_ids) ORDER BY e.version;
        RETURN;
    END IF;

    IF p_expected_version IS NULL THEN
        INSERT INTO streams AS s (stream_id, version) VALUES (p_stream_id, n)
            ON CONFLICT (stream_id) DO UPDATE SET version = s.version + n
            RETURNING s.version - n INTO base_version;
    ELSIF p_expected_version = 0 THEN
        INSERT INTO streams (stream_id, version) VALUES (p_stream_id, n)
            ON CONFLICT (stream_id) DO NOTHING;
        base_version := 0;
    ELSE
        UPDATE streams s SET version = s.version + n
         WHERE s.stream_id = p_stream_id AND s.version = p_expected_version;
        base_version := p_expected_version;
    END IF;

    IF NOT FOUND THEN
        RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
            p_expected_version, p_stream_id,
            coalesce((SELECT s.version FROM streams s WHERE s.stream_id = p_stream_id), 0)
            USING ERRCODE = 'EV001';
    END IF;

    RETURN QUERY
        INSERT INTO events AS e (stream_id, version, type, schema_version, data, metadata,
                                 event_id, occurred_at)
        SELECT p_stream_id, base_version + i.ord, i.type, i.schema_version, i.data,
               i.metadata, i.event_id, i.occurred_at
          FROM unnest(p_types, p_schema_versions, p_data, p_metadata, p_event_ids,
                      p_occurred_at)
               WITH ORDINALITY AS i(type, schema_version, data, metadata, event_id,
                                    occurred_at, ord)
        RETURNING e.global_position, e.version;

    -- A wake-up hint for followers; they always re-read from their checkpoint.
    PERFORM pg_notify('events', p_stream_id);
END
$$;
