-- Version 2 of the report contract: whether the reporter already reported the content to
-- the platform, when, and what the platform answered. Kept with the report; NULL in
-- `prior_reported` means the question was not asked (a version 1 report). No personal data.
ALTER TABLE intake.reports
    ADD COLUMN schema_version smallint NOT NULL DEFAULT 1,
    ADD COLUMN prior_reported boolean,
    ADD COLUMN prior_reported_at timestamptz,
    ADD COLUMN prior_platform_answer text,
    ADD COLUMN prior_platform_reference text;
