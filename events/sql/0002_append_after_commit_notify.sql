-- append_events without the NOTIFY, now the slow path of EventStore.append.
--
-- A NOTIFY in the appending transaction takes PostgreSQL's cluster-wide notify
-- lock at commit and holds it through the WAL flush, so it serialised every
-- appender's commit (half the throughput at 16 writers). Wake-ups are now sent
-- after commit, coalesced, by events.store.Notifier.
--
-- The client tries a single-statement fast path first (see _FAST_APPEND in
-- events/store.py); this function, unchanged otherwise, answers everything else:
-- idempotent retries, wrong expected versions, appends at any version.

CREATE OR REPLACE FUNCTION append_events(
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
END
$$;
