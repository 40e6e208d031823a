-- The notify service (issue 11): what it needs to write to reporters, built only from the
-- events it consumes (opened, reporters, triaged, outcomes), and the mail outbox every
-- email goes through. No foreign keys: the topics arrive in any order.
CREATE SCHEMA IF NOT EXISTS notify;

-- Event ids already applied: a redelivered or replayed event changes nothing.
CREATE TABLE notify.inbox (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per case, created by whichever of its events arrives first. `reporter_email` is
-- the only personal data here; it is deleted for good on erasure (`erased_at` set).
CREATE TABLE notify.cases (
    case_id           uuid PRIMARY KEY,
    source            text,               -- NULL until helpline.cases.opened arrives
    report_id         text,
    received_at       timestamptz,
    reporter_email    text,
    reporter_at       timestamptz,        -- occurred_at of the reporter details held
    erased_at         timestamptz,
    triage_revision   integer,            -- the revision whose URLs are `url_ids`
    url_ids           uuid[],
    receipt_queued_at timestamptz,        -- the receipt email was queued (once per case)
    outcome_queued_at timestamptz         -- the outcome email was queued (once per case)
);

-- Each URL's latest escalation state in a case (helpline.escalations.outcomes), the
-- latest by `occurred_at`; facts a later state leaves out are kept from earlier ones.
CREATE TABLE notify.urls (
    case_id       uuid NOT NULL,
    url_id        uuid NOT NULL,
    escalation_id uuid NOT NULL,
    url           text NOT NULL,
    platform      text NOT NULL,
    state         text NOT NULL,
    decision      text,
    reason        text,
    occurred_at   timestamptz NOT NULL,
    PRIMARY KEY (case_id, url_id)
);

-- The mail outbox: one row per email, `key` makes queueing idempotent. The Message-ID is
-- derived from the key when sent, so a resend after a crash between sending and recording
-- carries the same one. `recipient` is personal data: cleared when its reporter is erased.
CREATE TABLE notify.mail (
    seq         bigserial UNIQUE,
    key         text PRIMARY KEY,
    kind        text NOT NULL,
    case_id     uuid,
    recipient   text,
    subject     text NOT NULL,
    body_text   text NOT NULL,
    body_html   text,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL DEFAULT now(),
    attempts    integer NOT NULL DEFAULT 0,
    leased_until timestamptz,
    sent_at     timestamptz,
    gave_up_at  timestamptz,
    last_error  text
);
CREATE INDEX notify_mail_due ON notify.mail (due_at, seq)
    WHERE sent_at IS NULL AND gave_up_at IS NULL;
CREATE INDEX notify_mail_recipient_sent ON notify.mail (recipient, sent_at)
    WHERE sent_at IS NOT NULL;
CREATE INDEX notify_mail_case ON notify.mail (case_id);
