-- Idempotency-Key: the first response to a POST, kept 24 hours per organisation
-- and key. A row with no status is a request still being answered.
CREATE TABLE idempotency_keys (
    organisation_id text NOT NULL,
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    status          integer,
    response        bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organisation_id, key)
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);
