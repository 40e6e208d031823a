-- Metrics figures per period, platform and harm type (issue 9): the facts each figure is
-- computed from, kept exactly once per event like the counters (the inbox still decides).
-- Rows counted before this migration lack these facts: `helpline metrics rebuild` refills
-- every table from the topics.

-- One row per triaged case: the period is the month/year it was received.
CREATE TABLE metrics.cases (
    case_id         uuid PRIMARY KEY,
    received_at     timestamptz NOT NULL,
    urgency         text NOT NULL,
    harm_types      text[] NOT NULL,
    platforms       text[] NOT NULL,
    urls            integer NOT NULL,
    decision_due_at timestamptz
);
CREATE INDEX metrics_cases_received ON metrics.cases (received_at);

-- Each escalation (distinct content): when its first report reached intake, and when and
-- after how long the platform decided (exact durations, for median and p90).
ALTER TABLE metrics.escalations
    ADD COLUMN received_at      timestamptz,
    ADD COLUMN decided_at       timestamptz,
    ADD COLUMN decision_seconds bigint;

-- Each URL report (a case's URL): its escalation and when its case heard the decision.
ALTER TABLE metrics.url_reports
    ADD COLUMN escalation_id uuid,
    ADD COLUMN received_at   timestamptz,
    ADD COLUMN decided_at    timestamptz;
CREATE INDEX metrics_url_reports_escalation ON metrics.url_reports (escalation_id);

-- URL reports an outcome event said were past their deadline (state `breached`, once the
-- escalator sends it): one row per URL report, whatever the redeliveries.
CREATE TABLE metrics.breaches (
    url_id        uuid PRIMARY KEY,
    escalation_id uuid NOT NULL,
    case_id       uuid NOT NULL,
    platform      text NOT NULL,
    occurred_at   timestamptz NOT NULL
);
