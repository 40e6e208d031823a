-- Each URL's route as its outcome events give it: a URL of child sexual imagery goes to the
-- national hotline, not its platform, and the reporter is told so (and not shown the link).
ALTER TABLE notify.urls ADD COLUMN route text;
