-- The work queue: one row per test of a run that is not terminal yet. The rows
-- are a projection of the events (created by run.created, deleted when the
-- test's result becomes terminal); the lease columns are the runners' own state.

CREATE TABLE test_queue (
    result_id       text PRIMARY KEY,
    run_id          text NOT NULL,
    organisation_id text NOT NULL,
    position        integer NOT NULL,
    enqueued_at     timestamptz NOT NULL,
    task            jsonb NOT NULL,
    -- Runner state: claimable once available_at has passed (a lease expiring,
    -- or a retry's backoff ending, makes it claimable again).
    available_at    timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    lease_owner     text
) WITH (fillfactor = 70);

CREATE INDEX test_queue_claim_idx ON test_queue (available_at, enqueued_at, position);
CREATE INDEX test_queue_run_idx ON test_queue (run_id);
