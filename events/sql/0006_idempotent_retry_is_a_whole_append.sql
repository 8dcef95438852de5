-- An idempotent retry is all of one append, not a part of it.
--
-- 0005 compared each retried event with the stored one (stream, place, type,
-- payload, metadata), so a retry of the first two events of a three-event
-- append passed as the same append. Now the events just before and just after
-- the retried ones must belong to another append: one append is one statement
-- of one transaction, whose events share transaction_id and recorded_at
-- (statement_timestamp(), since 0005). Events stored before 0005 each have
-- their own recorded_at, so a part of such an old append still passes.

CREATE OR REPLACE FUNCTION append_events(
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
    me            xid8;
    moved         boolean := false;
    base_version  bigint;
    current       bigint;
    last_xid      xid8;
    problem       record;
    head          record;
BEGIN
    -- The transaction id is read in each statement, not here: a transaction
    -- that has none yet draws it as late as possible, once it holds the lock.
    IF n <> (SELECT count(DISTINCT id) FROM unnest(p_event_ids) AS id) THEN
        SELECT id INTO problem FROM unnest(p_event_ids) AS id GROUP BY id HAVING count(*) > 1
         LIMIT 1;
        RAISE EXCEPTION 'Duplicate event id in one append: % (Stream: %)', problem.id,
            p_stream_id USING ERRCODE = 'EV005';
    END IF;

    -- Every look-up of an id is an index probe (LATERAL ... LIMIT 1), whatever
    -- plan PL/pgSQL caches: `= ANY` and joins planned on a small table scanned
    -- every event.
    IF EXISTS (SELECT FROM unnest(p_event_ids) AS x(id)
                CROSS JOIN LATERAL (SELECT FROM events e WHERE e.event_id = x.id LIMIT 1) AS hit)
    THEN
        -- The first event (in the order given) that is not what this append
        -- would have stored: missing, in another stream, out of order, different.
        SELECT i.ord, i.event_id, e.stream_id, e.version,
               CASE
                   WHEN e.event_id IS NULL THEN 'is not stored, but others of this append are'
                   WHEN e.stream_id <> p_stream_id THEN 'is stored in another stream'
                   WHEN e.version - i.ord <> first_stored.base
                       THEN 'is stored at another place in the stream'
                   WHEN e.type <> i.type OR e.schema_version <> i.schema_version
                       THEN 'is stored with another type'
                   WHEN e.data::text <> i.data::text THEN 'is stored with another payload'
                   WHEN e.metadata::text <> i.metadata::text THEN 'is stored with other metadata'
               END AS reason
          INTO problem
          FROM unnest(p_event_ids, p_types, p_schema_versions, p_data, p_metadata)
               WITH ORDINALITY AS i(event_id, type, schema_version, data, metadata, ord)
          LEFT JOIN LATERAL (SELECT * FROM events s WHERE s.event_id = i.event_id LIMIT 1) AS e
                 ON true
         CROSS JOIN LATERAL (
               SELECT f.version - j.ord AS base
                 FROM unnest(p_event_ids) WITH ORDINALITY AS j(event_id, ord)
                 CROSS JOIN LATERAL (SELECT s.version FROM events s
                                      WHERE s.event_id = j.event_id LIMIT 1) AS f
                ORDER BY j.ord LIMIT 1) AS first_stored
         WHERE e.event_id IS NULL
            OR e.stream_id <> p_stream_id
            OR e.version - i.ord <> first_stored.base
            OR e.type <> i.type OR e.schema_version <> i.schema_version
            OR e.data::text <> i.data::text
            OR e.metadata::text <> i.metadata::text
         ORDER BY i.ord
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'Idempotency conflict: event % (number % of the append) % '
                '(Stream: %, Stored in: %, Version: %)',
                problem.event_id, problem.ord, problem.reason, p_stream_id,
                coalesce(problem.stream_id, '-'), coalesce(problem.version::text, '-')
                USING ERRCODE = 'EV002',
                      HINT = 'a retry must repeat the same events; new events need new ids';
        END IF;
        -- All of that append, not a part of it. One append is one statement of
        -- one transaction, so its events share transaction_id and recorded_at:
        -- the events just before the first and just after the last (two index
        -- probes) must belong to another append.
        SELECT e.version, e.transaction_id, e.recorded_at INTO head
          FROM events e WHERE e.event_id = p_event_ids[1];
        IF EXISTS (SELECT FROM events o
                    WHERE o.stream_id = p_stream_id
                      AND o.version IN (head.version - 1, head.version + n)
                      AND o.transaction_id = head.transaction_id
                      AND o.recorded_at = head.recorded_at) THEN
            RAISE EXCEPTION 'Idempotency conflict: event % (number 1 of the append) is stored '
                'as part of a longer append: a retry must repeat all of its events '
                '(Stream: %, Stored in: %, Version: %)',
                p_event_ids[1], p_stream_id, p_stream_id, head.version
                USING ERRCODE = 'EV002',
                      HINT = 'a retry must repeat the same events; new events need new ids';
        END IF;
        RETURN QUERY
            SELECT e.global_position, e.version
              FROM unnest(p_event_ids) WITH ORDINALITY AS i(event_id, ord)
             CROSS JOIN LATERAL (SELECT s.global_position, s.version FROM events s
                                  WHERE s.event_id = i.event_id LIMIT 1) AS e
             ORDER BY i.ord;
        RETURN;
    END IF;

    IF p_expected_version IS NULL THEN
        -- Appenders at the end queue on an advisory lock of the stream first:
        -- it needs no transaction id, so a transaction without one draws it
        -- once it is first in line. Queued on the row lock alone they would draw
        -- their ids when the holder before them commits, all at once, in any
        -- order, and all but the luckiest be refused as stale.
        PERFORM pg_advisory_xact_lock(hashtextextended(p_stream_id, 0));
        FOR attempt IN 1..2 LOOP
            SELECT s.version INTO base_version FROM streams s
             WHERE s.stream_id = p_stream_id FOR UPDATE;
            IF FOUND THEN
                UPDATE streams s
                   SET version = s.version + n, last_transaction_id = pg_current_xact_id()
                 WHERE s.stream_id = p_stream_id
                   AND s.last_transaction_id <= pg_current_xact_id();
                moved := FOUND;
                EXIT;
            END IF;
            INSERT INTO streams (stream_id, version, last_transaction_id)
                VALUES (p_stream_id, n, pg_current_xact_id())
                ON CONFLICT (stream_id) DO NOTHING;
            base_version := 0;
            moved := FOUND;
            -- Not moved: a concurrent append created the stream; lock it and go on.
            EXIT WHEN moved;
        END LOOP;
    ELSIF p_expected_version = 0 THEN
        INSERT INTO streams (stream_id, version, last_transaction_id)
            VALUES (p_stream_id, n, pg_current_xact_id())
            ON CONFLICT (stream_id) DO NOTHING;
        base_version := 0;
        moved := FOUND;
    ELSE
        UPDATE streams s SET version = s.version + n, last_transaction_id = pg_current_xact_id()
         WHERE s.stream_id = p_stream_id AND s.version = p_expected_version
           AND s.last_transaction_id <= pg_current_xact_id();
        base_version := p_expected_version;
        moved := FOUND;
    END IF;

    IF NOT moved THEN
        me := pg_current_xact_id();
        SELECT s.version, s.last_transaction_id INTO current, last_xid
          FROM streams s WHERE s.stream_id = p_stream_id;
        IF last_xid > me AND (p_expected_version IS NULL OR p_expected_version = current) THEN
            RAISE EXCEPTION 'Stale transaction: stream % was last appended by transaction %, '
                'which began after this one (%) (Stream: %, Stream Version: %)',
                p_stream_id, last_xid, me, p_stream_id, current
                USING ERRCODE = 'EV004',
                      HINT = 'retry in a new transaction: a stream''s versions must rise with '
                             'transaction ids for every reader of the feed to see them in order';
        END IF;
        RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
            p_expected_version, p_stream_id, coalesce(current, 0)
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
