-- Alerts to the people on duty (issue 11 item 5), kept by the notify service. A critical
-- case and a breached deadline each raise one alert: an email to every on-duty address
-- (notify's mail outbox) and one signed webhook delivery (the table below). No reporter
-- data is stored here.
CREATE SCHEMA IF NOT EXISTS notify;

-- Each case's latest triage as notify saw it (helpline.cases.triaged): a breach alert
-- names the case's urgency and harm types, which the outcome event does not carry.
CREATE TABLE notify.alert_cases (
    case_id    uuid PRIMARY KEY,
    urgency    text NOT NULL,
    harm_types text[] NOT NULL,
    revision   integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The webhook outbox: one row per alert (alert_id is derived from what raised it, so a
-- redelivered event adds nothing). `body` is the exact JSON that is signed and POSTed.
CREATE TABLE notify.webhook_alerts (
    alert_id        uuid PRIMARY KEY,
    type            text NOT NULL CHECK (type IN ('case.critical', 'deadline.breached')),
    case_id         uuid NOT NULL,
    body            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'delivered', 'given_up')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    last_status     integer,
    finished_at     timestamptz
);
CREATE INDEX webhook_alerts_due ON notify.webhook_alerts (next_attempt_at)
    WHERE status = 'pending';
