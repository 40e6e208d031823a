-- Casework's read model (issue 7): every case as practitioners see it, built only from the
-- events casework consumes (opened, triaged, outcomes, activity, reporters); no other
-- service's table is read. No foreign keys between these tables: the topics arrive in any
-- order (an outcome before its case was opened is kept and shown once the case arrives).
CREATE SCHEMA IF NOT EXISTS casework;

-- Event ids already applied: a redelivered or replayed event changes nothing.
CREATE TABLE casework.inbox (
    event_id     uuid PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- One row per opened case (helpline.cases.opened). No reporter data.
CREATE TABLE casework.cases (
    case_id        uuid PRIMARY KEY,
    source         text NOT NULL,
    report_id      text NOT NULL,
    received_at    timestamptz NOT NULL,
    published_at   timestamptz,
    organisation   text,
    description    text NOT NULL,
    urls           text[] NOT NULL,
    issue_types    text[] NOT NULL,
    prior_report   jsonb,
    child_affected boolean,
    simulated      boolean NOT NULL DEFAULT false,
    UNIQUE (source, report_id)
);
CREATE INDEX casework_cases_received ON casework.cases (received_at DESC);

-- Every triage decision (helpline.cases.triaged), every revision kept: the highest
-- revision is the current one, the others are the case's history.
CREATE TABLE casework.decisions (
    event_id        uuid PRIMARY KEY,
    case_id         uuid NOT NULL,
    revision        integer NOT NULL,
    triaged_at      timestamptz NOT NULL,
    harm_types      text[] NOT NULL,
    lead_harm_type  text,
    urgency         text NOT NULL,
    route           text NOT NULL,
    rules_fired     text[] NOT NULL,
    matches         jsonb NOT NULL,
    rules_version   text,
    decision_due_at timestamptz,
    overridden_by   text,
    override_note   text,
    urls            jsonb NOT NULL
);
CREATE INDEX casework_decisions_case ON casework.decisions (case_id, revision DESC, triaged_at DESC);

-- Each case's escalation (one per case and escalation; an escalation is shared by every case
-- that reported the same content): its latest state, from helpline.escalations.outcomes.
CREATE TABLE casework.escalations (
    case_id            uuid NOT NULL,
    escalation_id      uuid NOT NULL,
    url_id             uuid,
    url                text NOT NULL,
    platform           text NOT NULL,
    route              text,
    state              text NOT NULL,
    decision           text,
    platform_reference text,
    reason             text,
    attempts           integer NOT NULL DEFAULT 0,
    due_at             timestamptz,
    followups          integer NOT NULL DEFAULT 0,
    received_at        timestamptz NOT NULL,
    linked_at          timestamptz,
    state_since        timestamptz NOT NULL,
    PRIMARY KEY (case_id, escalation_id)
);
CREATE INDEX casework_escalations_escalation ON casework.escalations (escalation_id);
CREATE INDEX casework_escalations_state ON casework.escalations (state);

-- Every state each case's escalation reached, in the order they occurred.
CREATE TABLE casework.states (
    event_id           uuid PRIMARY KEY,
    case_id            uuid NOT NULL,
    escalation_id      uuid NOT NULL,
    state              text NOT NULL,
    occurred_at        timestamptz NOT NULL,
    decision           text,
    platform_reference text,
    reason             text,
    actor              text,
    note               text,
    overturned         boolean
);
CREATE INDEX casework_states_escalation ON casework.states (case_id, escalation_id, occurred_at);

-- Every platform call and practitioner action on an escalation (helpline.escalations.activity).
CREATE TABLE casework.activity (
    event_id      uuid PRIMARY KEY,
    escalation_id uuid NOT NULL,
    platform      text NOT NULL,
    kind          text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    http_status   integer,
    result        text,
    error         text,
    actor         text,
    action        text,
    note          text,
    command_id    uuid
);
CREATE INDEX casework_activity_escalation ON casework.activity (escalation_id, started_at);
CREATE INDEX casework_activity_command ON casework.activity (command_id)
    WHERE command_id IS NOT NULL;

-- Practitioners' commands, stored when accepted (the same transaction puts them in the
-- outbox), so the case shows them at once as pending until the activity reports them.
CREATE TABLE casework.commands (
    command_id         uuid PRIMARY KEY,
    case_id            uuid NOT NULL,
    escalation_id      uuid,
    action             text NOT NULL,
    actor              text NOT NULL,
    issued_at          timestamptz NOT NULL,
    note               text NOT NULL,
    platform_reference text,
    decision           text,
    retriage           jsonb
);
CREATE INDEX casework_commands_case ON casework.commands (case_id, issued_at);
CREATE INDEX casework_commands_escalation ON casework.commands (escalation_id, issued_at);

-- Each case's reporter (helpline.cases.reporters; personal data). An erasure keeps the row
-- with every personal field null and `erased_at` set, so an older copy of the details that
-- arrives later cannot bring them back.
CREATE TABLE casework.reporters (
    case_id     uuid PRIMARY KEY,
    name        text,
    email       text,
    role        text,
    occurred_at timestamptz NOT NULL,
    erased_at   timestamptz,
    CHECK (erased_at IS NULL OR (name IS NULL AND email IS NULL AND role IS NULL))
);

-- Each case's current decision: its highest revision (the latest, among equal revisions).
CREATE VIEW casework.current_decisions AS
SELECT DISTINCT ON (case_id) *
FROM casework.decisions
ORDER BY case_id, revision DESC, triaged_at DESC, event_id;

-- Each case's escalation with its deadline (its own, else the case's decision's), its
-- case's urgency, and whether it is overdue now: breached, or past its deadline with no
-- decision while still open (a failed one waits for a person, so it counts too).
CREATE VIEW casework.escalation_status AS
SELECT e.*,
       COALESCE(e.due_at, d.decision_due_at) AS due,
       d.urgency,
       (e.state = 'breached'
        OR (e.decision IS NULL
            AND COALESCE(e.due_at, d.decision_due_at) < now()
            AND e.state NOT IN ('decided', 'closed', 'withdrawn', 'appeal_decided'))) AS overdue
FROM casework.escalations e
LEFT JOIN casework.current_decisions d USING (case_id);
