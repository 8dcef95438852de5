-- The web console's sign-in sessions. Only a SHA-256 of the session token is
-- stored (as for API keys): a copy of this table opens no session. A session
-- belongs to the key it was opened with, so revoking the key ends it too.
CREATE TABLE console_sessions (
    token_hash      bytea PRIMARY KEY,
    organisation_id text NOT NULL REFERENCES organisations (id),
    api_key_id      text NOT NULL REFERENCES api_keys (id),
    -- The per-session token every state-changing form carries.
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);

CREATE INDEX console_sessions_expires_idx ON console_sessions (expires_at);
