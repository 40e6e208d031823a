-- The per-recipient rate limit (helpline_notify.mail) counts a recipient's emails in any
-- letter case, `lower(recipient) = lower($1)`: the index of 0020 is on the raw column, so
-- every email sent scanned the whole outbox, a cost growing with every email ever queued.
-- This one answers that lookup (sent within the window, or unsent and in flight) from the
-- recipient's own rows; the raw-column index serves no query and goes.
CREATE INDEX notify_mail_recipient_lower ON notify.mail (lower(recipient), sent_at);
DROP INDEX notify.notify_mail_recipient_sent;
