-- Whether a child (under 18) is affected, as a version 2 report says: true, false, or NULL
-- when the reporter was not asked (version 1) or does not know. Carried on
-- helpline.cases.opened as child_affected.
ALTER TABLE intake.reports ADD COLUMN child_affected boolean;
