-- API keys for the HTTP APIs (`helpline keys create|list|revoke`). A key is
-- `hk_<key_id>_<secret>`; only the key id (public) and a salted SHA-256 of the secret are
-- kept, never the secret itself. A `submit` key names the one source it may submit for.
CREATE SCHEMA IF NOT EXISTS access;

CREATE TABLE access.api_keys (
    key_id       text PRIMARY KEY,
    secret_salt  bytea NOT NULL,
    secret_hash  bytea NOT NULL,
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL CHECK (
                     cardinality(scopes) > 0
                     AND scopes <@ ARRAY['submit', 'read', 'practitioner', 'admin']),
    source       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text NOT NULL,
    revoked_at   timestamptz,
    last_used_at timestamptz,
    CHECK (('submit' = ANY (scopes)) = (source IS NOT NULL))
);
