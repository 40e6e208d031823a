"""Folding events into the case read model, exactly once per event id, in any order.

Each batch is applied in one transaction. `casework.inbox` keeps the id of every event
applied, so a redelivered or replayed event changes nothing. The topics arrive in no order
between them, so nothing here waits for anything else:

- a case (`helpline.cases.opened`) is stored once; a second copy changes nothing;
- every triage decision is kept (the highest revision is the current one), whether or not
  its case is known yet;
- each outcome is kept as a state in the escalation's history, and the case's escalation
  row moves to it only if it occurred no earlier than the state it holds (an older state
  arriving late joins the history and moves nothing); facts a later state leaves out
  (the platform's reference, the deadline, the route) are kept from earlier ones;
- each activity (a platform call or a practitioner's action, applied or refused) is kept,
  and is matched to the practitioner's command by `command_id` when read;
- a reporter's details replace older ones; a null reporter erases them for good: the row
  keeps no personal data and later-arriving older details are ignored.

A case's outcomes or decisions stored before the case itself show once it arrives.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from helpline_shared.db import Conn
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    ReporterDetailsV1,
)

Event = (
    CaseOpenedV1 | CaseTriagedV1 | EscalationOutcomeV1 | EscalationActivityV1 | ReporterDetailsV1
)

# The ids of `$1` not applied before, recorded as applied now.
_FRESH = """
WITH fresh AS (
    INSERT INTO casework.inbox (event_id) SELECT unnest($1::uuid[])
    ON CONFLICT DO NOTHING RETURNING event_id
)
SELECT array_agg(event_id) FROM fresh
"""
_CASE = """
INSERT INTO casework.cases (case_id, source, report_id, received_at, published_at, organisation,
    description, urls, issue_types, prior_report, child_affected, simulated)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $12)
ON CONFLICT DO NOTHING
"""
_DECISION = """
INSERT INTO casework.decisions (event_id, case_id, revision, triaged_at, harm_types,
    lead_harm_type, urgency, route, rules_fired, matches, rules_version, decision_due_at,
    overridden_by, override_note, urls)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb, $11, $12, $13, $14,
    $15::text::jsonb)
ON CONFLICT DO NOTHING
"""
_STATE = """
INSERT INTO casework.states (event_id, case_id, escalation_id, state, occurred_at, decision,
    platform_reference, reason, actor, note, overturned)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT DO NOTHING
"""
_ESCALATION = """
INSERT INTO casework.escalations AS e (case_id, escalation_id, url_id, url, platform, route,
    state, decision, platform_reference, reason, attempts, due_at, followups, received_at,
    linked_at, state_since)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (case_id, escalation_id) DO UPDATE SET
    state = CASE WHEN EXCLUDED.state_since >= e.state_since THEN EXCLUDED.state ELSE e.state END,
    decision = CASE WHEN EXCLUDED.state_since >= e.state_since
                    THEN COALESCE(EXCLUDED.decision,
                                  CASE WHEN EXCLUDED.state IN ('breached', 'appealed')
                                       THEN e.decision END)
                    ELSE e.decision END,
    reason = CASE WHEN EXCLUDED.state_since >= e.state_since THEN EXCLUDED.reason
                  ELSE e.reason END,
    state_since = GREATEST(e.state_since, EXCLUDED.state_since),
    platform_reference = CASE WHEN EXCLUDED.state_since >= e.state_since
                              THEN COALESCE(EXCLUDED.platform_reference, e.platform_reference)
                              ELSE COALESCE(e.platform_reference, EXCLUDED.platform_reference)
                              END,
    url_id = COALESCE(e.url_id, EXCLUDED.url_id),
    route = CASE WHEN EXCLUDED.state_since >= e.state_since
                 THEN COALESCE(EXCLUDED.route, e.route) ELSE COALESCE(e.route, EXCLUDED.route)
                 END,
    due_at = CASE WHEN EXCLUDED.state_since >= e.state_since
                  THEN COALESCE(EXCLUDED.due_at, e.due_at) ELSE COALESCE(e.due_at, EXCLUDED.due_at)
                  END,
    attempts = GREATEST(e.attempts, EXCLUDED.attempts),
    followups = GREATEST(e.followups, EXCLUDED.followups),
    linked_at = COALESCE(e.linked_at, EXCLUDED.linked_at)
"""
_ACTIVITY = """
INSERT INTO casework.activity (event_id, escalation_id, platform, kind, started_at, finished_at,
    http_status, result, error, actor, action, note, command_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
"""
_REPORTER = """
INSERT INTO casework.reporters AS r (case_id, name, email, role, occurred_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (case_id) DO UPDATE SET
    name = EXCLUDED.name, email = EXCLUDED.email, role = EXCLUDED.role,
    occurred_at = EXCLUDED.occurred_at
WHERE r.erased_at IS NULL AND EXCLUDED.occurred_at >= r.occurred_at
"""
_ERASE = """
INSERT INTO casework.reporters AS r (case_id, occurred_at, erased_at) VALUES ($1, $2, $2)
ON CONFLICT (case_id) DO UPDATE SET
    name = NULL, email = NULL, role = NULL,
    occurred_at = GREATEST(r.occurred_at, EXCLUDED.occurred_at),
    erased_at = COALESCE(r.erased_at, EXCLUDED.erased_at)
"""


def event_id(event: Event) -> uuid.UUID:
    return event.event_id


async def apply(conn: Conn, events: Sequence[Event]) -> list[Event]:
    """Apply the events not applied before, in `conn`'s transaction; returns those applied.
    A repeated id (already applied, or twice in `events`) is applied once."""
    if not events:
        return []
    fresh = set(await conn.fetchval(_FRESH, [event_id(e) for e in events]) or ())
    new: list[Event] = []
    for e in events:
        if event_id(e) in fresh:
            fresh.discard(event_id(e))
            new.append(e)
    cases = [e for e in new if isinstance(e, CaseOpenedV1)]
    decisions = [e for e in new if isinstance(e, CaseTriagedV1)]
    outcomes = [e for e in new if isinstance(e, EscalationOutcomeV1)]
    activity = [e for e in new if isinstance(e, EscalationActivityV1)]
    reporters = [e for e in new if isinstance(e, ReporterDetailsV1)]
    if cases:
        await conn.executemany(_CASE, [_case_args(e) for e in cases])
    if decisions:
        await conn.executemany(_DECISION, [_decision_args(e) for e in decisions])
    if outcomes:
        await conn.executemany(_STATE, [_state_args(e) for e in outcomes])
        await conn.executemany(_ESCALATION, [_escalation_args(e) for e in outcomes])
    if activity:
        await conn.executemany(_ACTIVITY, [_activity_args(e) for e in activity])
    for r in reporters:
        if r.reporter is None:
            await conn.execute(_ERASE, r.case_id, r.occurred_at)
        else:
            await conn.execute(
                _REPORTER,
                r.case_id,
                r.reporter.name,
                str(r.reporter.email),
                r.reporter.role,
                r.occurred_at,
            )
    return new


def _case_args(e: CaseOpenedV1) -> tuple[object, ...]:
    return (
        e.case_id,
        e.source,
        e.report_id,
        e.received_at,
        e.published_at,
        e.organisation,
        e.description,
        list(e.urls),
        list(e.issue_types),
        e.prior_report.model_dump_json() if e.prior_report else None,
        e.child_affected,
        e.simulated,
    )


def _decision_args(e: CaseTriagedV1) -> tuple[object, ...]:
    return (
        e.event_id,
        e.case_id,
        e.revision,
        e.triaged_at,
        list(e.harm_types),
        e.lead_harm_type,
        e.urgency,
        e.route,
        list(e.rules_fired),
        json.dumps([m.model_dump(mode="json") for m in e.matches]),
        e.rules_version,
        e.decision_due_at,
        e.overridden_by,
        e.override_note,
        json.dumps([u.model_dump(mode="json") for u in e.urls]),
    )


def _state_args(e: EscalationOutcomeV1) -> tuple[object, ...]:
    return (
        e.event_id,
        e.case_id,
        e.escalation_id,
        e.state,
        e.occurred_at,
        e.decision,
        e.platform_reference,
        e.reason,
        e.actor,
        e.note,
        e.overturned,
    )


def _escalation_args(e: EscalationOutcomeV1) -> tuple[object, ...]:
    return (
        e.case_id,
        e.escalation_id,
        e.url_id,
        e.url,
        e.platform,
        e.route,
        e.state,
        e.decision,
        e.platform_reference,
        e.reason,
        e.attempts,
        e.due_at,
        e.followups or 0,
        e.received_at,
        e.linked_at,
        e.occurred_at,
    )


def _activity_args(e: EscalationActivityV1) -> tuple[object, ...]:
    return (
        e.event_id,
        e.escalation_id,
        e.platform,
        e.kind,
        e.started_at,
        e.finished_at,
        e.http_status,
        e.result,
        e.error,
        e.actor,
        e.action,
        e.note,
        e.command_id,
    )
