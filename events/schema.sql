-- The declared schema of the event store: what the migrations in sql/ add up to.
-- tests/migration/test_declared_schemas.py checks that a database built from
-- the migrations equals one built from this file (with projections/schema.sql
-- and service/schema.sql): every table, column, index, constraint, function
-- and trigger. A new migration changes this file too.
--
-- streams: one row per stream, its version (the optimistic-concurrency check
-- is the conditional update of this row). events: append-only (the triggers
-- refuse UPDATE, DELETE and TRUNCATE); `transaction_id` orders the commit-order
-- feed (see events/store.py, read_all). append_events(): the general append
-- (idempotent retries, EV001 wrong expected version, EV002 idempotency
-- conflict); events/store.py takes a single-statement fast path first.

CREATE FUNCTION append_events(p_stream_id text, p_expected_version bigint, p_event_ids uuid[], p_types text[], p_schema_versions integer[], p_data json[], p_metadata json[], p_occurred_at timestamp with time zone[]) RETURNS TABLE(global_position bigint, version bigint)
    LANGUAGE plpgsql
    AS $$
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
END
$$;

CREATE FUNCTION events_refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % refused', TG_OP
        USING ERRCODE = 'EV003', HINT = 'append a new event instead';
END
$$;

CREATE TABLE streams (
    stream_id text NOT NULL,
    version bigint NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT streams_version_check CHECK ((version >= 1))
);

ALTER TABLE ONLY streams
    ADD CONSTRAINT streams_pkey PRIMARY KEY (stream_id);

CREATE TABLE events (
    global_position bigint NOT NULL,
    stream_id text NOT NULL,
    version bigint NOT NULL,
    type text NOT NULL,
    schema_version integer DEFAULT 1 NOT NULL,
    data json NOT NULL,
    metadata json DEFAULT '{}'::json NOT NULL,
    event_id uuid NOT NULL,
    occurred_at timestamp with time zone NOT NULL,
    recorded_at timestamp with time zone DEFAULT clock_timestamp() NOT NULL,
    transaction_id xid8 DEFAULT pg_current_xact_id() NOT NULL,
    CONSTRAINT events_version_check CHECK ((version >= 1))
);

ALTER TABLE events ALTER COLUMN global_position ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME events_global_position_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);

ALTER TABLE ONLY events
    ADD CONSTRAINT events_pkey PRIMARY KEY (stream_id, version);

ALTER TABLE ONLY events
    ADD CONSTRAINT events_event_id_key UNIQUE (event_id);

CREATE INDEX events_commit_order_idx ON events USING btree (transaction_id, global_position);

CREATE TRIGGER events_append_only BEFORE DELETE OR UPDATE ON events FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
