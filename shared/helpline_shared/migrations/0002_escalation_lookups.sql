-- How many times an escalation was looked up on its platform after an unclear submit,
-- so lookups back off and end (needs_manual) instead of repeating forever.
ALTER TABLE escalator.escalations ADD COLUMN lookups integer NOT NULL DEFAULT 0;
