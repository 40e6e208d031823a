-- Claims read only what they claim, whatever a platform's backlog: the most urgent first,
-- each urgency in due order (one index range per urgency, replacing the platform-wide
-- due index, which made every claim sort all of a platform's due escalations), then any
-- urgency outside the event schema's (critical, high, normal), which the claim's order
-- does not list.
DROP INDEX escalator.escalations_due;
CREATE INDEX escalations_due_by_urgency
    ON escalator.escalations (platform, urgency, next_action_at)
    WHERE state IN ('queued', 'retrying', 'submitted', 'in_flight');
CREATE INDEX escalations_due_unlisted_urgency
    ON escalator.escalations (platform, next_action_at)
    WHERE state IN ('queued', 'retrying', 'submitted', 'in_flight')
      AND urgency NOT IN ('critical', 'high', 'normal');
