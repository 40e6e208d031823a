-- `helpline reporter erase`: a reporter's personal data is replaced in place by fixed
-- markers (reporter_name '[erased]', reporter_email 'erased+<case-id-prefix>@invalid',
-- reporter_role NULL) and the refused bytes that held their email are cleared, while the
-- case's row, its counts and the rejections' reasons stay. The NOT NULL constraints stay
-- too, so every reader of intake.reports keeps working. `organisation` is a school or
-- service, not a person, and is kept.
ALTER TABLE intake.reports ADD COLUMN reporter_erased_at timestamptz;

-- One row per erasure that erased something, written in the same transaction as the
-- erasure. The email a request matched on is kept only as a salted SHA-256 (a fresh salt
-- per row), never in clear: enough to show that a given address was erased, not to
-- recover it.
CREATE TABLE intake.erasures (
    erasure_id         uuid PRIMARY KEY,
    matched_by         text NOT NULL CHECK (matched_by IN ('case_id', 'email')),
    email_salt         bytea,
    email_hash         bytea,
    case_ids           uuid[] NOT NULL,
    reports_erased     integer NOT NULL,
    rejections_cleared integer NOT NULL,
    erased_by          text NOT NULL,
    reason             text,
    erased_at          timestamptz NOT NULL DEFAULT now()
);
