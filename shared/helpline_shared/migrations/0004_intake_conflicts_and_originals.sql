-- Reports: a stable hash of the canonical report, so a resubmission of the same
-- (source, report_id) with other content is a conflict rather than a duplicate. Rows
-- stored before this migration have none and compare as duplicates.
ALTER TABLE intake.reports ADD COLUMN content_hash text;

-- Refusals from every channel ('kafka', 'http', 'form'). The refused bytes are kept here
-- only (published copies have the reporter's fields redacted) until `helpline intake purge`
-- clears them after the retention period; reasons and counts stay.
ALTER TABLE intake.rejections ADD COLUMN original bytea;
CREATE INDEX rejections_with_original ON intake.rejections (rejected_at)
    WHERE original IS NOT NULL;
