-- Status checks made since submission, so chasing a pending decision backs off to a cap.
ALTER TABLE escalator.escalations ADD COLUMN status_checks integer NOT NULL DEFAULT 0;
-- When the notice was last sent: a lookup that finds nothing proves it never arrived only
-- once the platform's settle period has passed since then.
ALTER TABLE escalator.escalations ADD COLUMN last_sent_at timestamptz;
-- An attempt released before its call went out (its claim would have outlived the lease).
ALTER TABLE escalator.attempts DROP CONSTRAINT attempts_result_check;
ALTER TABLE escalator.attempts ADD CONSTRAINT attempts_result_check
    CHECK (result IN ('ok', 'retryable', 'permanent', 'lost', 'not_sent'));
