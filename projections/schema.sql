-- The declared schema of the projections: what the migrations in sql/ add up to.
-- tests/migration/test_declared_schemas.py checks that a database built from
-- the migrations equals one built from this file (and events/schema.sql,
-- service/schema.sql), table by table, column by column.
--
-- The inline read models come first: scripts/rebuild-projections builds fresh
-- copies of them (everything above the async-projections marker below) in a
-- side schema and swaps them in.

CREATE TABLE test_runs (
    id              text PRIMARY KEY,
    organisation_id text NOT NULL,
    workflow_id     text NOT NULL,
    test_id         text,
    target_block_id text,
    status          text NOT NULL,
    trigger_type    text NOT NULL,
    created_at      timestamptz NOT NULL,
    version         bigint NOT NULL,
    resource        json NOT NULL,
    workflow_revision bigint NOT NULL DEFAULT 0
);

CREATE INDEX test_runs_list_idx ON test_runs (organisation_id, created_at, id);
CREATE INDEX test_runs_workflow_idx ON test_runs (organisation_id, workflow_id, created_at, id);

CREATE TABLE test_results (
    id                       text PRIMARY KEY,
    run_id                   text NOT NULL,
    organisation_id          text NOT NULL,
    test_id                  text NOT NULL,
    block_id                 text NOT NULL,
    position                 integer NOT NULL,
    status                   text NOT NULL,
    version                  bigint NOT NULL,
    validity_fingerprint     text NOT NULL,
    resource                 json NOT NULL,
    -- What the latest-run summaries are chosen by (see projections/summaries.py).
    started_at               timestamptz,
    verdict                  text
-- Room on each page so that a result's updates (queued, running, completed)
-- are HOT: no new index entries (see 0007_result_updates_stay_on_their_page).
) WITH (fillfactor = 40);

CREATE INDEX test_results_run_idx ON test_results (run_id, position);
CREATE INDEX test_results_test_idx ON test_results (organisation_id, test_id);

-- The work queue (see 0002_test_queue.sql for what each column means).
CREATE TABLE test_queue (
    result_id       text PRIMARY KEY,
    run_id          text NOT NULL,
    organisation_id text NOT NULL,
    position        integer NOT NULL,
    enqueued_at     timestamptz NOT NULL,
    task            json NOT NULL,
    -- Runner state: claimable once available_at has passed (a lease expiring,
    -- or a retry's backoff ending, makes it claimable again).
    available_at    timestamptz NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    lease_owner     text
) WITH (fillfactor = 70);

CREATE INDEX test_queue_claim_idx ON test_queue (available_at, enqueued_at, position);
CREATE INDEX test_queue_run_idx ON test_queue (run_id);

-- @async-projections: below, the async projections' tables (not rebuilt by the swap).

-- Each async projection's place in the commit-order feed (events.store.read_all),
-- written in the transaction that writes its rows.
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
    latest          json,
    latest_passing  json,
    latest_failing  json
);
