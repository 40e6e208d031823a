-- Each service owns one schema; no service reads another's tables.

CREATE SCHEMA intake;

-- One row per accepted report; (source, report_id) is the idempotency key.
-- Holds the reporter's personal data: the only table that does.
CREATE TABLE intake.reports (
    case_id         uuid PRIMARY KEY,
    source          text NOT NULL,
    report_id       text NOT NULL,
    via             text NOT NULL CHECK (via IN ('kafka', 'http')),
    received_at     timestamptz NOT NULL,
    submitted_at    timestamptz,
    reporter_name   text NOT NULL,
    reporter_email  text NOT NULL,
    reporter_role   text,
    organisation    text,
    description     text NOT NULL,
    urls            text[] NOT NULL,
    issue_types     text[] NOT NULL,
    duplicates      integer NOT NULL DEFAULT 0,
    UNIQUE (source, report_id)
);

-- Kafka positions already processed, so a redelivery does not count a duplicate twice.
CREATE TABLE intake.inbox (
    position     text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE intake.rejections (
    rejection_id uuid PRIMARY KEY,
    rejected_at  timestamptz NOT NULL,
    via          text NOT NULL,
    reasons      jsonb NOT NULL
);

CREATE SCHEMA escalator;

-- One row per URL per case: the escalation and its current state.
CREATE TABLE escalator.escalations (
    escalation_id      uuid PRIMARY KEY,
    case_id            uuid NOT NULL,
    url                text NOT NULL,
    normalized_url     text NOT NULL,
    platform           text NOT NULL,
    route              text NOT NULL,
    harm_types         text[] NOT NULL,
    urgency            text NOT NULL,
    received_at        timestamptz NOT NULL,
    state              text NOT NULL CHECK (state IN
                         ('queued', 'in_flight', 'retrying', 'submitted', 'decided',
                          'failed', 'needs_manual')),
    decision           text,
    platform_reference text,
    attempts           integer NOT NULL DEFAULT 0,
    next_action_at     timestamptz NOT NULL DEFAULT now(),
    claimed_at         timestamptz,
    reason             text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    decided_at         timestamptz,
    UNIQUE (case_id, platform, normalized_url)
);
CREATE INDEX escalations_due ON escalator.escalations (platform, next_action_at)
    WHERE state IN ('queued', 'retrying', 'submitted', 'in_flight');

-- Every call to a platform, recorded before it is made and completed after.
CREATE TABLE escalator.attempts (
    attempt_id    uuid PRIMARY KEY,
    escalation_id uuid NOT NULL REFERENCES escalator.escalations,
    kind          text NOT NULL CHECK (kind IN ('submit', 'status', 'lookup')),
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    result        text CHECK (result IN ('ok', 'retryable', 'permanent', 'lost')),
    http_status   integer,
    error         text
);
CREATE INDEX attempts_escalation ON escalator.attempts (escalation_id);

CREATE SCHEMA metrics;

-- Event ids already counted: totals stay exact under redelivery.
CREATE TABLE metrics.inbox (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Latest known state of each escalation, so a state change moves one count to another.
CREATE TABLE metrics.escalations (
    escalation_id uuid PRIMARY KEY,
    case_id       uuid NOT NULL,
    platform      text NOT NULL,
    state         text NOT NULL,
    rank          integer NOT NULL,
    decision      text
);

-- Running totals: (name, label) -> value.
CREATE TABLE metrics.counters (
    name  text NOT NULL,
    label text NOT NULL DEFAULT '',
    value bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (name, label)
);

-- Transactional outbox shared by the services that write state and then publish.
CREATE TABLE outbox (
    seq        bigserial PRIMARY KEY,
    service    text NOT NULL,
    topic      text NOT NULL,
    key        bytea,
    value      bytea NOT NULL,
    headers    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_service ON outbox (service, seq);
