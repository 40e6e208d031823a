-- Casework on escalations: practitioners' actions, the hotline route, re-triage, deadlines.

-- The states an escalation's row can hold now include a practitioner's closing (advice
-- only), a withdrawal after a re-triage, and the appeal states (ESC-B's appeal loop).
-- `breached` is announced, never held: a breached escalation stays open in its state.
ALTER TABLE escalator.escalations DROP CONSTRAINT IF EXISTS escalations_state_check;
ALTER TABLE escalator.escalations ADD CONSTRAINT escalations_state_check CHECK (state IN
    ('queued', 'in_flight', 'retrying', 'submitted', 'decided', 'failed', 'needs_manual',
     'closed', 'withdrawn', 'appealed', 'appeal_decided'));

-- When the platform's decision is due: the earliest `decision_due_at` of the linked cases.
ALTER TABLE escalator.escalations ADD COLUMN due_at timestamptz;

-- A practitioner asked to contest the escalation's no_violation decision: the appeal loop
-- (appeals.py) sends every escalation with appeal_requested_at set and no appeal sent yet,
-- and announces `appealed` with appeal_actor and appeal_note.
ALTER TABLE escalator.escalations ADD COLUMN appeal_requested_at timestamptz;
ALTER TABLE escalator.escalations ADD COLUMN appeal_actor text;
ALTER TABLE escalator.escalations ADD COLUMN appeal_note text;
ALTER TABLE escalator.escalations ADD COLUMN appeal_command_id uuid;
CREATE INDEX escalations_appeal_requested ON escalator.escalations (appeal_requested_at)
    WHERE appeal_requested_at IS NOT NULL;

-- Every call's kind (each ends as one activity event): the platform's notice, status and
-- lookup, and the follow-ups, appeals, withdrawals and hotline reports of casework.
ALTER TABLE escalator.attempts DROP CONSTRAINT IF EXISTS attempts_kind_check;
ALTER TABLE escalator.attempts ADD CONSTRAINT attempts_kind_check CHECK (kind IN
    ('submit', 'status', 'lookup', 'followup', 'appeal', 'withdrawal', 'hotline_report'));

-- What each announced state carried, so a case linked later hears the same facts. A state
-- reached more than once (handed to a person again, submitted by hand after a failure)
-- is told again with `occurrence` (the command or attempt that reached it again): the
-- first time is '' and keeps the event id uuid5(url id, state).
ALTER TABLE escalator.escalation_states ADD COLUMN occurrence text NOT NULL DEFAULT '';
ALTER TABLE escalator.escalation_states DROP CONSTRAINT escalation_states_pkey;
ALTER TABLE escalator.escalation_states ADD PRIMARY KEY (escalation_id, state, occurrence);
ALTER TABLE escalator.escalation_states ADD COLUMN route text;
ALTER TABLE escalator.escalation_states ADD COLUMN due_at timestamptz;
ALTER TABLE escalator.escalation_states ADD COLUMN followups integer;
ALTER TABLE escalator.escalation_states ADD COLUMN actor text;
ALTER TABLE escalator.escalation_states ADD COLUMN note text;
ALTER TABLE escalator.escalation_states ADD COLUMN overturned boolean;

-- Practitioners' commands applied (or refused): a redelivered command changes nothing.
CREATE TABLE escalator.applied_commands (
    command_id    uuid PRIMARY KEY,
    escalation_id uuid,
    case_id       uuid NOT NULL,
    action        text NOT NULL,
    actor         text NOT NULL,
    result        text NOT NULL CHECK (result IN ('ok', 'refused')),
    reason        text,
    applied_at    timestamptz NOT NULL DEFAULT now()
);

-- Re-triage: a case unlinked from an escalation its new decision no longer routes to
-- keeps its link row, marked, so its history stays and a redelivery links nothing twice.
-- A case's URL has one current link (the unlinked ones stay beside it); `revision` is
-- the triage decision that made the link (a link made by an override has its own event
-- ids, see outcomes.py).
ALTER TABLE escalator.escalation_cases ADD COLUMN unlinked_at timestamptz;
ALTER TABLE escalator.escalation_cases ADD COLUMN revision integer NOT NULL DEFAULT 1;
ALTER TABLE escalator.escalation_cases DROP CONSTRAINT escalation_cases_case_id_url_id_key;
CREATE UNIQUE INDEX escalation_cases_current ON escalator.escalation_cases (case_id, url_id)
    WHERE unlinked_at IS NULL;

-- A re-triage moved the last case off this escalation while its notice was out (or about
-- to go): the withdrawal loop (retriage.py) withdraws it at the platform and announces
-- `withdrawn` to the cases unlinked at this moment. A queued notice is no longer sent.
ALTER TABLE escalator.escalations ADD COLUMN withdraw_requested_at timestamptz;
CREATE INDEX escalations_withdraw_requested ON escalator.escalations (next_action_at)
    WHERE withdraw_requested_at IS NOT NULL
      AND state IN ('queued', 'retrying', 'submitted', 'needs_manual');
-- Hotline reports still to make: the hotline worker's claims.
CREATE INDEX escalations_hotline_due ON escalator.escalations (next_action_at)
    WHERE route = 'hotline' AND state = 'needs_manual' AND platform_reference IS NULL;
