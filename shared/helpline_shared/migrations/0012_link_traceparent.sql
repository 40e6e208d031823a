-- The W3C traceparent of the work that linked a case to its escalation (its case.triaged
-- record's processing), so the outcomes a platform worker adds later for that case
-- continue the case's trace. NULL when tracing was off, and for links made before it.
ALTER TABLE escalator.escalation_cases ADD COLUMN traceparent text;
