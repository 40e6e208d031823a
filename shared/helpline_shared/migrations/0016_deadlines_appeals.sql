-- Deadlines and appeals (escalator deadlines.py and appeals.py).

-- A breach is announced once, when the escalation's decision deadline passed with no
-- decision; then the platform is re-notified (a follow-up citing its reference) every
-- renotify interval, at most renotify_max times. `next_followup_at` is when the next one
-- is due (NULL: none will be sent); while a follow-up is in flight it holds the claim's
-- lease, so a process that dies mid-call leaves it to be taken up again.
ALTER TABLE escalator.escalations ADD COLUMN breached_at timestamptz;
ALTER TABLE escalator.escalations ADD COLUMN followups integer NOT NULL DEFAULT 0;
ALTER TABLE escalator.escalations ADD COLUMN next_followup_at timestamptz;

-- Escalations that may still breach: one index range for those with a due time, one
-- for those made before due times were kept (their deadline runs from received_at).
CREATE INDEX escalations_undecided_due ON escalator.escalations (due_at)
    WHERE breached_at IS NULL
      AND state IN ('queued', 'in_flight', 'retrying', 'submitted', 'needs_manual');
CREATE INDEX escalations_undecided_no_due ON escalator.escalations (received_at)
    WHERE breached_at IS NULL AND due_at IS NULL
      AND state IN ('queued', 'in_flight', 'retrying', 'submitted', 'needs_manual');
CREATE INDEX escalations_followup_due ON escalator.escalations (next_followup_at)
    WHERE next_followup_at IS NOT NULL;

-- An appeal requested by a practitioner (appeal_requested_at, 0015) is sent on the
-- platform's appeal route and then asked for its result: `appeal_next_at` is when the
-- loop acts on it next (NULL: at once after the request), `appeal_reference` the
-- platform's reference of the appeal once sent, `appeal_checks` how many times its
-- result was asked for (the interval between them doubles), and once decided the new
-- decision, whether it overturned the old one and when.
ALTER TABLE escalator.escalations ADD COLUMN appeal_reference text;
ALTER TABLE escalator.escalations ADD COLUMN appeal_sent_at timestamptz;
ALTER TABLE escalator.escalations ADD COLUMN appeal_next_at timestamptz;
ALTER TABLE escalator.escalations ADD COLUMN appeal_checks integer NOT NULL DEFAULT 0;
ALTER TABLE escalator.escalations ADD COLUMN appeal_decided_at timestamptz;
ALTER TABLE escalator.escalations ADD COLUMN appeal_decision text;
ALTER TABLE escalator.escalations ADD COLUMN appeal_overturned boolean;
-- The decision the appeal contested (the escalation's decision becomes the appeal's).
ALTER TABLE escalator.escalations ADD COLUMN appealed_decision text;
