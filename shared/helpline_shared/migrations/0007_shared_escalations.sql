-- Shared escalations: one escalation per content (route, platform, canonical URL), linked
-- to every case that reported it, so the same content is sent to its platform once.
-- Escalations opened before this migration keep their per-case id; each gets one link.

-- The escalation's row now stands for the content; `case_id` is the case that opened it.
ALTER TABLE escalator.escalations DROP CONSTRAINT IF EXISTS
    escalations_case_id_platform_normalized_url_key;
-- How many cases share it, and the triage rules' category and reason code for its notice.
ALTER TABLE escalator.escalations ADD COLUMN linked_cases integer NOT NULL DEFAULT 1;
ALTER TABLE escalator.escalations ADD COLUMN dsa_category text;
ALTER TABLE escalator.escalations ADD COLUMN reason_code text;

-- Every case an escalation answers for, with the URL as that case reported it.
-- (case_id, url_id) is unique: a redelivered case links nothing twice.
CREATE TABLE escalator.escalation_cases (
    escalation_id uuid NOT NULL REFERENCES escalator.escalations DEFERRABLE INITIALLY DEFERRED,
    case_id       uuid NOT NULL,
    url_id        uuid NOT NULL,
    url           text NOT NULL,
    harm_types    text[] NOT NULL,
    urgency       text NOT NULL,
    received_at   timestamptz NOT NULL,
    linked_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (escalation_id, case_id),
    UNIQUE (case_id, url_id)
);

-- Each state announced for an escalation, as announced: a case linked later is told the
-- same facts at once.
CREATE TABLE escalator.escalation_states (
    escalation_id      uuid NOT NULL REFERENCES escalator.escalations,
    state              text NOT NULL,
    attempts           integer NOT NULL,
    decision           text,
    platform_reference text,
    reason             text,
    occurred_at        timestamptz NOT NULL,
    PRIMARY KEY (escalation_id, state)
);

INSERT INTO escalator.escalation_cases
    (escalation_id, case_id, url_id, url, harm_types, urgency, received_at, linked_at)
SELECT escalation_id, case_id, escalation_id, url, harm_types, urgency, received_at, created_at
FROM escalator.escalations;

INSERT INTO escalator.escalation_states
    (escalation_id, state, attempts, decision, platform_reference, reason, occurred_at)
SELECT escalation_id, state, attempts, decision, platform_reference, reason,
       COALESCE(decided_at, updated_at)
FROM escalator.escalations
WHERE state IN ('submitted', 'decided', 'failed', 'needs_manual');

-- Metrics: each case's reported URL (a URL report) beside each escalation (distinct content).
CREATE TABLE metrics.url_reports (
    url_id   uuid PRIMARY KEY,
    case_id  uuid NOT NULL,
    platform text NOT NULL,
    state    text NOT NULL,
    rank     integer NOT NULL,
    decision text
);
-- Whether the platform was ever notified of the content (submitted or decided): the
-- published report's "URLs escalated".
ALTER TABLE metrics.escalations ADD COLUMN notified boolean NOT NULL DEFAULT false;

INSERT INTO metrics.url_reports (url_id, case_id, platform, state, rank, decision)
SELECT escalation_id, case_id, platform, state, rank, decision FROM metrics.escalations;
UPDATE metrics.escalations SET notified = true WHERE state IN ('submitted', 'decided');

INSERT INTO metrics.counters (name, label, value)
SELECT 'url_reports_by_state', state, count(*) FROM metrics.url_reports GROUP BY state;
INSERT INTO metrics.counters (name, label, value)
SELECT 'url_report_takedowns', '', count(*) FROM metrics.url_reports
WHERE state = 'decided' AND decision IN ('removed', 'disabled', 'already_gone');
INSERT INTO metrics.counters (name, label, value)
SELECT 'urls_escalated', '', count(*) FROM metrics.escalations WHERE notified;
