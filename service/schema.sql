-- The declared schema of the service's own tables: what the migrations in
-- sql/ add up to. tests/migration/test_declared_schemas.py checks that a
-- database built from the migrations equals one built from this file (with
-- events/schema.sql and projections/schema.sql). A new migration changes this
-- file too.
--
-- organisations and api_keys (service/ops/keys.py: keys stored as hashes only);
-- the registry (service/registry/store.py): workflows, blocks, workflow_tests,
-- plain tables, every row scoped by its organisation; idempotency_keys
-- (service/http/idempotency.py).

CREATE TABLE organisations (
    id text NOT NULL,
    name text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY organisations
    ADD CONSTRAINT organisations_pkey PRIMARY KEY (id);

CREATE TABLE api_keys (
    id text NOT NULL,
    organisation_id text NOT NULL,
    key_hash bytea NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    revoked_at timestamp with time zone
);

ALTER TABLE ONLY api_keys
    ADD CONSTRAINT api_keys_pkey PRIMARY KEY (id);

ALTER TABLE ONLY api_keys
    ADD CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash);

ALTER TABLE ONLY api_keys
    ADD CONSTRAINT api_keys_organisation_id_fkey FOREIGN KEY (organisation_id) REFERENCES organisations(id);

CREATE TABLE workflows (
    id text NOT NULL,
    organisation_id text NOT NULL,
    name text NOT NULL,
    description text DEFAULT ''::text NOT NULL,
    project_id text,
    draft_version_id text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    revision bigint DEFAULT 0 NOT NULL
);

ALTER TABLE ONLY workflows
    ADD CONSTRAINT workflows_pkey PRIMARY KEY (id);

ALTER TABLE ONLY workflows
    ADD CONSTRAINT workflows_organisation_id_fkey FOREIGN KEY (organisation_id) REFERENCES organisations(id);

CREATE INDEX workflows_list_idx ON workflows USING btree (organisation_id, created_at, id);

CREATE INDEX workflows_updated_idx ON workflows USING btree (organisation_id, updated_at, id);

CREATE TABLE blocks (
    organisation_id text NOT NULL,
    id text NOT NULL,
    workflow_id text NOT NULL,
    type text NOT NULL,
    label text DEFAULT ''::text NOT NULL,
    position_x double precision DEFAULT 0 NOT NULL,
    position_y double precision DEFAULT 0 NOT NULL,
    width double precision,
    height double precision,
    config jsonb DEFAULT '{}'::jsonb NOT NULL,
    config_fingerprint text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL,
    parent_id text
);

ALTER TABLE ONLY blocks
    ADD CONSTRAINT blocks_pkey PRIMARY KEY (organisation_id, id);

ALTER TABLE ONLY blocks
    ADD CONSTRAINT blocks_organisation_id_fkey FOREIGN KEY (organisation_id) REFERENCES organisations(id);

ALTER TABLE ONLY blocks
    ADD CONSTRAINT blocks_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE CASCADE;

CREATE INDEX blocks_workflow_idx ON blocks USING btree (organisation_id, workflow_id, created_at, id);

CREATE TABLE workflow_tests (
    id text NOT NULL,
    organisation_id text NOT NULL,
    workflow_id text NOT NULL,
    block_id text NOT NULL,
    name text,
    source jsonb NOT NULL,
    assertion jsonb NOT NULL,
    handle_inputs_fingerprint text NOT NULL,
    validity_fingerprint text NOT NULL,
    created_at timestamp with time zone NOT NULL,
    updated_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY workflow_tests
    ADD CONSTRAINT workflow_tests_pkey PRIMARY KEY (id);

ALTER TABLE ONLY workflow_tests
    ADD CONSTRAINT workflow_tests_organisation_id_fkey FOREIGN KEY (organisation_id) REFERENCES organisations(id);

ALTER TABLE ONLY workflow_tests
    ADD CONSTRAINT workflow_tests_workflow_id_fkey FOREIGN KEY (workflow_id) REFERENCES workflows(id) ON DELETE CASCADE;

CREATE INDEX workflow_tests_block_idx ON workflow_tests USING btree (organisation_id, block_id);

CREATE INDEX workflow_tests_list_idx ON workflow_tests USING btree (organisation_id, workflow_id, created_at, id);

CREATE TABLE idempotency_keys (
    organisation_id text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    status integer,
    response bytea,
    created_at timestamp with time zone DEFAULT now() NOT NULL
);

ALTER TABLE ONLY idempotency_keys
    ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (organisation_id, key);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys USING btree (created_at);

CREATE TABLE console_sessions (
    token_hash bytea NOT NULL,
    organisation_id text NOT NULL,
    api_key_id text NOT NULL,
    csrf_token text NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone NOT NULL
);

ALTER TABLE ONLY console_sessions
    ADD CONSTRAINT console_sessions_pkey PRIMARY KEY (token_hash);

ALTER TABLE ONLY console_sessions
    ADD CONSTRAINT console_sessions_organisation_id_fkey FOREIGN KEY (organisation_id) REFERENCES organisations(id);

ALTER TABLE ONLY console_sessions
    ADD CONSTRAINT console_sessions_api_key_id_fkey FOREIGN KEY (api_key_id) REFERENCES api_keys(id);

CREATE INDEX console_sessions_expires_idx ON console_sessions USING btree (expires_at);
