"""Folding events into the case read model, exactly once per event id, in any order.

Each batch is applied in one transaction, as if its events were applied one at a time in
their order. `casework.inbox` keeps the id of every event applied, so a redelivered or
replayed event changes nothing. The topics arrive in no order between them, so nothing
here waits for anything else:

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
from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

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

_E = TypeVar("_E", bound=Event)

# The ids of `$1` not applied before, recorded as applied now.
_FRESH = """
WITH fresh AS (
    INSERT INTO casework.inbox (event_id) SELECT unnest($1::uuid[])
    ON CONFLICT DO NOTHING RETURNING event_id
)
SELECT array_agg(event_id) FROM fresh
"""
# Each statement below writes a whole batch's rows of one table: one array parameter per
# column, unnested together (a list-valued column travels as JSON text, since a PostgreSQL
# array cannot hold arrays of different lengths).
_CASES = """
INSERT INTO casework.cases (case_id, source, report_id, received_at, published_at, organisation,
    description, urls, issue_types, prior_report, child_affected, simulated)
SELECT c.case_id, c.source, c.report_id, c.received_at, c.published_at, c.organisation,
    c.description, ARRAY(SELECT jsonb_array_elements_text(c.urls::jsonb)),
    ARRAY(SELECT jsonb_array_elements_text(c.issue_types::jsonb)), c.prior_report::jsonb,
    c.child_affected, c.simulated
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], $12::boolean[])
    WITH ORDINALITY AS c(case_id, source, report_id, received_at, published_at, organisation,
        description, urls, issue_types, prior_report, child_affected, simulated, n)
ORDER BY c.n
ON CONFLICT DO NOTHING
"""
_DECISIONS = """
INSERT INTO casework.decisions (event_id, case_id, revision, triaged_at, harm_types,
    lead_harm_type, urgency, route, rules_fired, matches, rules_version, decision_due_at,
    overridden_by, override_note, urls)
SELECT d.event_id, d.case_id, d.revision, d.triaged_at,
    ARRAY(SELECT jsonb_array_elements_text(d.harm_types::jsonb)), d.lead_harm_type, d.urgency,
    d.route, ARRAY(SELECT jsonb_array_elements_text(d.rules_fired::jsonb)), d.matches::jsonb,
    d.rules_version, d.decision_due_at, d.overridden_by, d.override_note, d.urls::jsonb
FROM unnest($1::uuid[], $2::uuid[], $3::integer[], $4::timestamptz[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::timestamptz[],
    $13::text[], $14::text[], $15::text[])
    AS d(event_id, case_id, revision, triaged_at, harm_types, lead_harm_type, urgency, route,
        rules_fired, matches, rules_version, decision_due_at, overridden_by, override_note, urls)
ON CONFLICT DO NOTHING
"""
_STATES = """
INSERT INTO casework.states (event_id, case_id, escalation_id, state, occurred_at, decision,
    platform_reference, reason, actor, note, overturned)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[],
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[])
ON CONFLICT DO NOTHING
"""
# At most one row per (case_id, escalation_id) per statement: see `apply`.
_ESCALATIONS = """
INSERT INTO casework.escalations AS e (case_id, escalation_id, url_id, url, platform, route,
    state, decision, platform_reference, reason, attempts, due_at, followups, received_at,
    linked_at, state_since)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::integer[], $12::timestamptz[],
    $13::integer[], $14::timestamptz[], $15::timestamptz[], $16::timestamptz[])
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
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[],
    $6::timestamptz[], $7::integer[], $8::text[], $9::text[], $10::text[], $11::text[],
    $12::text[], $13::uuid[])
ON CONFLICT DO NOTHING
"""
# At most one row per case_id per statement, and a case in only one of the two: see `apply`.
_REPORTERS = """
INSERT INTO casework.reporters AS r (case_id, name, email, role, occurred_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
ON CONFLICT (case_id) DO UPDATE SET
    name = EXCLUDED.name, email = EXCLUDED.email, role = EXCLUDED.role,
    occurred_at = EXCLUDED.occurred_at
WHERE r.erased_at IS NULL AND EXCLUDED.occurred_at >= r.occurred_at
"""
_ERASURES = """
INSERT INTO casework.reporters AS r (case_id, occurred_at, erased_at)
SELECT x.case_id, x.occurred_at, x.occurred_at
FROM unnest($1::uuid[], $2::timestamptz[]) AS x(case_id, occurred_at)
ON CONFLICT (case_id) DO UPDATE SET
    name = NULL, email = NULL, role = NULL,
    occurred_at = GREATEST(r.occurred_at, EXCLUDED.occurred_at),
    erased_at = COALESCE(r.erased_at, EXCLUDED.erased_at)
"""


def event_id(event: Event) -> uuid.UUID:
    return event.event_id


async def apply(conn: Conn, events: Sequence[Event]) -> list[Event]:
    """Apply the events not applied before, in `conn`'s transaction; returns those applied.
    A repeated id (already applied, or twice in `events`) is applied once.

    The result is that of applying the new events one at a time in their order, in a
    handful of statements: one set-based statement per table per batch, except where
    several events of the batch update one row (a case's escalation, a case's reporter).
    An upsert cannot touch a row twice, and the escalation's rules do not fold into one
    row ahead of the stored one (a newer state without a decision clears the stored
    decision, which a `breached` after it would otherwise have kept), so those rows are
    written in rounds: each row's first event of the batch, then its second, and so on."""
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
        await conn.execute(_CASES, *_columns([_case_args(e) for e in cases]))
    if decisions:
        await conn.execute(_DECISIONS, *_columns([_decision_args(e) for e in decisions]))
    if outcomes:
        await conn.execute(_STATES, *_columns([_state_args(e) for e in outcomes]))
        for step in rounds(outcomes, lambda e: (e.case_id, e.escalation_id)):
            await conn.execute(_ESCALATIONS, *_columns([_escalation_args(e) for e in step]))
    if activity:
        await conn.execute(_ACTIVITY, *_columns([_activity_args(e) for e in activity]))
    for group in rounds(reporters, lambda e: e.case_id):
        erased = [(r.case_id, r.occurred_at) for r in group if r.reporter is None]
        details = [
            (r.case_id, r.reporter.name, str(r.reporter.email), r.reporter.role, r.occurred_at)
            for r in group
            if r.reporter is not None
        ]
        if erased:
            await conn.execute(_ERASURES, *_columns(erased))
        if details:
            await conn.execute(_REPORTERS, *_columns(details))
    return new


def rounds(events: Sequence[_E], key: Callable[[_E], Hashable]) -> list[list[_E]]:
    """`events` in rounds with at most one event per key each: round n holds the n-th
    event of every key that has one, so each key's events keep their order across rounds."""
    by_key: dict[Hashable, list[_E]] = {}
    for e in events:
        by_key.setdefault(key(e), []).append(e)
    depth = max(map(len, by_key.values()), default=0)
    return [[row[n] for row in by_key.values() if len(row) > n] for n in range(depth)]


def _columns(rows: Sequence[tuple[object, ...]]) -> list[list[object]]:
    """Rows as one list per column, the parameters of an `unnest` statement."""
    return [list(column) for column in zip(*rows, strict=True)]


def _case_args(e: CaseOpenedV1) -> tuple[object, ...]:
    return (
        e.case_id,
        e.source,
        e.report_id,
        e.received_at,
        e.published_at,
        e.organisation,
        e.description,
        json.dumps(list(e.urls)),
        json.dumps(list(e.issue_types)),
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
        json.dumps(list(e.harm_types)),
        e.lead_harm_type,
        e.urgency,
        e.route,
        json.dumps(list(e.rules_fired)),
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
