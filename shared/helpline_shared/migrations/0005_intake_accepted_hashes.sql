-- What the HTTP API and the form accepted (202) before the consumer stored it: the content
-- hash per case id, so a different report under the same (source, report_id) sent right
-- after gets 409 at once instead of a 202 that the consumer later refuses.
CREATE TABLE intake.accepted_hashes (
    case_id uuid PRIMARY KEY,
    content_hash text NOT NULL,
    accepted_at timestamptz NOT NULL DEFAULT now()
);
