-- Async projections follow the store in commit order (events.store.read_all);
-- each keeps its checkpoint here, written in the transaction that writes its rows.
CREATE TABLE projection_checkpoints (
    name            text PRIMARY KEY,
    transaction_id  xid8 NOT NULL DEFAULT '0',
    global_position bigint NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Each saved test's latest run summaries (LatestBlockTestRunSummary JSON).
CREATE TABLE test_run_summaries (
    test_id         text PRIMARY KEY,
    organisation_id text NOT NULL,
    latest          jsonb,
    latest_passing  jsonb,
    latest_failing  jsonb
);
