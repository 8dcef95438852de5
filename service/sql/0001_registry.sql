-- The registry: organisations and their API keys, workflows, blocks, saved tests.
-- Every resource belongs to one organisation; every lookup is scoped by it.

CREATE TABLE organisations (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id              text PRIMARY KEY,
    organisation_id text NOT NULL REFERENCES organisations (id),
    -- SHA-256 of the key: the key itself is never stored.
    key_hash        bytea NOT NULL UNIQUE,
    name            text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

CREATE TABLE workflows (
    id               text PRIMARY KEY,
    organisation_id  text NOT NULL REFERENCES organisations (id),
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    project_id       text,
    draft_version_id text NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

CREATE INDEX workflows_list_idx ON workflows (organisation_id, created_at, id);

CREATE TABLE blocks (
    organisation_id    text NOT NULL REFERENCES organisations (id),
    id                 text NOT NULL,
    workflow_id        text NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    type               text NOT NULL,
    label              text NOT NULL DEFAULT '',
    position_x         double precision NOT NULL DEFAULT 0,
    position_y         double precision NOT NULL DEFAULT 0,
    width              double precision,
    height             double precision,
    config             jsonb NOT NULL DEFAULT '{}',
    config_fingerprint text NOT NULL,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (organisation_id, id)
);

CREATE INDEX blocks_workflow_idx ON blocks (organisation_id, workflow_id, created_at, id);

CREATE TABLE workflow_tests (
    id                        text PRIMARY KEY,
    organisation_id           text NOT NULL REFERENCES organisations (id),
    workflow_id               text NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    block_id                  text NOT NULL,
    name                      text,
    source                    jsonb NOT NULL,
    assertion                 jsonb NOT NULL,
    handle_inputs_fingerprint text NOT NULL,
    validity_fingerprint      text NOT NULL,
    created_at                timestamptz NOT NULL,
    updated_at                timestamptz NOT NULL
);

CREATE INDEX workflow_tests_list_idx ON workflow_tests (organisation_id, workflow_id, created_at, id);
CREATE INDEX workflow_tests_block_idx ON workflow_tests (organisation_id, block_id);
