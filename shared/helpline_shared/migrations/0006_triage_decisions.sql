CREATE SCHEMA triage;

-- One row per case: triage's decision, what made it, and the event published for it.
-- A redelivered case.opened republishes `event` unchanged (same bytes, same event id and
-- triaged_at) instead of deciding again, even if the rules changed since.
CREATE TABLE triage.decisions (
    case_id         uuid PRIMARY KEY,
    event_id        uuid NOT NULL,
    received_at     timestamptz NOT NULL,
    decided_at      timestamptz NOT NULL,
    harm_types      text[] NOT NULL,
    lead_harm_type  text,
    urgency         text NOT NULL,
    route           text NOT NULL,
    decision_due_at timestamptz,
    rules_version   text,
    rules_fired     text[] NOT NULL,
    -- [{"rule_id": ..., "evidence": [...]}]: each rule that fired and what made it fire.
    matches         jsonb NOT NULL,
    -- The triaged URLs as published (platform, kind, canonical form, route, reason, origin).
    urls            jsonb NOT NULL,
    -- How many other cases had reported the same content when this one was decided.
    prior_reports   integer NOT NULL DEFAULT 0,
    -- The published CaseTriagedV1, exactly as sent.
    event           text NOT NULL
);

-- Which cases reported which content (a readable URL's canonical form on its platform), so
-- a new case knows how many others reported the same content before it.
CREATE TABLE triage.content_reports (
    platform      text NOT NULL,
    canonical_url text NOT NULL,
    case_id       uuid NOT NULL,
    PRIMARY KEY (platform, canonical_url, case_id)
);
