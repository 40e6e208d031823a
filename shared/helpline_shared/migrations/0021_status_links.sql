-- Status links (issue 11): a private link per case that opens the reporter's status page
-- without a key. Only the SHA-256 of each token is stored, so a copy of the database does
-- not open any page. A link is live until `expires_at` and while `revoked_at` is NULL; a
-- practitioner's revocation keeps who (`revoked_by`, a key id) and when.
CREATE SCHEMA IF NOT EXISTS notify;

CREATE TABLE notify.status_links (
    token_sha256 bytea PRIMARY KEY CHECK (length(token_sha256) = 32),
    case_id      uuid NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    revoked_by   text,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);
CREATE INDEX notify_status_links_case ON notify.status_links (case_id);
