-- Issue 7: practitioners' re-triage in triage's history, and the new escalation states in
-- metrics' facts.

-- Every decision of a case stays: triage's own (revision 1) and each practitioner override
-- (revision 2, 3, ...), which names the decision it supersedes, who made it and why.
-- `deadline_source` says where the decision's deadline came from (the rules data's hours or
-- a HELPLINE_DEADLINE_<URGENCY>_S setting); null on decisions made before it was kept.
ALTER TABLE triage.decisions
    ADD COLUMN revision        integer NOT NULL DEFAULT 1,
    ADD COLUMN supersedes      uuid,
    ADD COLUMN overridden_by   text,
    ADD COLUMN override_note   text,
    ADD COLUMN deadline_source text;
ALTER TABLE triage.decisions DROP CONSTRAINT decisions_pkey;
ALTER TABLE triage.decisions ADD PRIMARY KEY (case_id, revision);
CREATE UNIQUE INDEX triage_decisions_event ON triage.decisions (event_id);

-- Metrics: a case's figures follow its latest triage decision (an override replaces its
-- harm types and urgency; it is not a second case).
ALTER TABLE metrics.cases ADD COLUMN revision integer NOT NULL DEFAULT 1;

-- An escalation's state no longer only moves forward: a person escalates by hand what
-- waited for them or failed, an appeal follows a decision, a re-triage withdraws a notice.
-- The latest state (by when it was reached; the rank breaks ties) is the one counted, so
-- each row keeps when its state was reached. `overturned`: whether an appeal changed the
-- decision; `manual`: a practitioner recorded the decision.
ALTER TABLE metrics.escalations
    ADD COLUMN occurred_at timestamptz,
    ADD COLUMN overturned  boolean,
    ADD COLUMN manual      boolean NOT NULL DEFAULT false;
ALTER TABLE metrics.url_reports ADD COLUMN occurred_at timestamptz;

-- A URL report can breach once per escalation (a re-triage moves it to another one).
ALTER TABLE metrics.breaches DROP CONSTRAINT breaches_pkey;
ALTER TABLE metrics.breaches ADD PRIMARY KEY (url_id, escalation_id);
