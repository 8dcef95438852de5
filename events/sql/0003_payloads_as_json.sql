-- Event payloads and metadata as `json`: the exact text the service wrote,
-- validated by PostgreSQL but not re-parsed.
--
-- `jsonb` parses every payload into its binary form when it is written and
-- renders it back to text every time it is read. The store never looks inside a
-- payload (the service decodes it, through the upcasters), so both conversions
-- were pure cost: rendering `jsonb` was most of PostgreSQL's work when reading
-- events (about 7 us of 9 per event when rebuilding), and parsing it a large
-- part of an append. `json` keeps the bytes as written, which is also what an
-- auditor wants to see. The `->>` operators still work on it.
--
-- The table is rewritten once (row triggers do not fire on a rewrite).

ALTER TABLE events ALTER COLUMN metadata DROP DEFAULT;
ALTER TABLE events
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN metadata TYPE json USING metadata::json;
ALTER TABLE events ALTER COLUMN metadata SET DEFAULT '{}';

-- append_events (0002), unchanged but for its payload parameters, now json[].
DROP FUNCTION append_events(text, bigint, uuid[], text[], integer[], jsonb[], jsonb[],
                            timestamptz[]);

CREATE FUNCTION append_events(
    p_stream_id        text,
    p_expected_version bigint,
    p_event_ids        uuid[],
    p_types            text[],
    p_schema_versions  integer[],
    p_data             json[],
    p_metadata         json[],
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
