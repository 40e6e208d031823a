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

-- Among states of one rank the later (occurred_at) wins: a person can move an escalation
-- waiting for them back to submitted (escalated by hand), and record a decision after a
-- failure. Submitted and needs_manual now share rank 1.
ALTER TABLE metrics.escalations
    ADD COLUMN occurred_at timestamptz,
    ADD COLUMN overturned  boolean,
    ADD COLUMN manual      boolean NOT NULL DEFAULT false;
ALTER TABLE metrics.url_reports ADD COLUMN occurred_at timestamptz;
UPDATE metrics.escalations SET rank = 1 WHERE state = 'needs_manual';
UPDATE metrics.url_reports SET rank = 1 WHERE state = 'needs_manual';
