"""Reading the case read model: one case, lists of cases, and the practitioners' queue.

Everything here reads only casework's own tables (see :mod:`helpline_casework.projection`
for how they are fed). Reads see what has been applied so far: an event still on its way
shows up on a later read. A case is found once its `helpline.cases.opened` event arrived;
its decisions and escalations, stored even when they came first, show with it then.

Urgency order of the queue: hotline route (child sexual imagery) first, then overdue, then
critical, high, normal, then the longest waiting.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from helpline_casework.views import (
    ActionView,
    AttemptView,
    CaseSummary,
    CaseView,
    DecisionView,
    EscalationView,
    QueueItem,
    ReporterView,
    StateView,
)
from helpline_shared.db import Conn
from helpline_shared.events import (
    EscalationState,
    PriorReport,
    RuleMatch,
    TriagedUrl,
    Urgency,
    case_reference,
    derive_id,
)

MAX_LIMIT = 200


class CaseFilters(BaseModel):
    """Filters of the case list; each one left out matches every case."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: EscalationState | None = Field(
        None, description="Cases with an escalation in this state."
    )
    urgency: Urgency | None = Field(None, description="Cases whose current urgency is this.")
    platform: str | None = Field(
        None, max_length=100, description="Cases with a URL on this platform."
    )
    overdue: bool | None = Field(None, description="Cases with (or without) an overdue URL.")
    limit: int = Field(50, ge=1, le=MAX_LIMIT)
    offset: int = Field(0, ge=0, le=1_000_000)


class QueueFilters(BaseModel):
    """Filters of the queue; each one left out matches every waiting escalation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str | None = Field(
        None,
        max_length=200,
        description="Why it waits: `hotline` (the hotline route), `overdue` (its decision "
        "deadline passed), `manual` (no automated channel, or the machine could not go on), "
        "`failed`, `needs_manual` or `breached` (its state), or any part of the reason in "
        "words (any letter case).",
    )
    platform: str | None = Field(None, max_length=100)
    urgency: Urgency | None = None
    min_age_s: int | None = Field(
        None, ge=0, le=10 * 365 * 86400, description="Waiting at least this many seconds."
    )
    limit: int = Field(100, ge=1, le=MAX_LIMIT)


def _json(value: Any) -> Any:
    """A jsonb column read as `::text` (so it reads the same whatever the connection's codec)."""
    return None if value is None else json.loads(value)


_CASE = """
SELECT case_id, source, report_id, received_at, organisation, description, urls, issue_types,
       prior_report::text AS prior_report, child_affected
FROM casework.cases WHERE {where}
"""
_DECISIONS = """
SELECT event_id, revision, triaged_at, harm_types, lead_harm_type, urgency, route, rules_fired,
       matches::text AS matches, rules_version, decision_due_at, overridden_by, override_note,
       urls::text AS urls
FROM casework.decisions WHERE case_id = $1
ORDER BY revision, triaged_at, event_id
"""
_ESCALATIONS = """
SELECT escalation_id, url_id, url, platform, route, state, decision, platform_reference, reason,
       due, overdue, followups, received_at
FROM casework.escalation_status WHERE case_id = $1
"""
_STATES = """
SELECT escalation_id, state, occurred_at, decision, actor, note
FROM casework.states WHERE case_id = $1 ORDER BY occurred_at, event_id
"""
_ACTIVITY = """
SELECT event_id, escalation_id, kind, started_at, finished_at, http_status, result, error,
       actor, action, note, command_id
FROM casework.activity WHERE escalation_id = ANY($1::uuid[])
ORDER BY started_at, event_id
"""
_COMMANDS = """
SELECT command_id, escalation_id, action, actor, issued_at, note, platform_reference, decision
FROM casework.commands WHERE case_id = $1 OR escalation_id = ANY($2::uuid[])
ORDER BY issued_at, command_id
"""
_REPORTER = "SELECT name, email, role, erased_at FROM casework.reporters WHERE case_id = $1"


async def get_case(conn: Conn, case_id: uuid.UUID, *, contacts: bool = False) -> CaseView | None:
    """The case with every decision, escalation, attempt and action; None if not (yet) known.
    The reporter's contact details only with `contacts` (None when casework has none)."""
    row = await conn.fetchrow(_CASE.format(where="case_id = $1"), case_id)
    return None if row is None else await _assemble(conn, row, contacts=contacts)


async def find_case(
    conn: Conn, *, source: str, report_id: str, contacts: bool = False
) -> CaseView | None:
    """The case opened for the publisher's `(source, report_id)`; None if none."""
    row = await conn.fetchrow(
        _CASE.format(where="source = $1 AND report_id = $2"), source, report_id
    )
    return None if row is None else await _assemble(conn, row, contacts=contacts)


async def by_reference(conn: Conn, reference: str) -> uuid.UUID | None:
    """The id of the case whose short reference is `reference` (any letter case, with or
    without the `HL-` and dashes); None if no known case has it."""
    wanted = _canonical_reference(reference)
    if wanted is None:
        return None
    # The reference is the first 40 bits of the id: look up by that prefix of its hex form.
    prefix = _reference_prefix(wanted)
    rows = await conn.fetch(
        "SELECT case_id FROM casework.cases WHERE case_id::text LIKE $1", prefix + "%"
    )
    for r in rows:
        if case_reference(r["case_id"]) == wanted:
            return r["case_id"]  # type: ignore[no-any-return]
    return None


def retriaged_event_id(command_id: uuid.UUID) -> uuid.UUID:
    """The id of the decision triage makes from a re-triage command (as triage derives it:
    `helpline_triage.override.retriaged_event_id`; a test holds the two equal)."""
    return derive_id("case.retriaged", command_id)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_READ_AS = {"O": "0", "I": "1", "L": "1"}


def _canonical_reference(text: str) -> str | None:
    chars = "".join(c for c in text.upper() if c.isalnum())
    chars = chars.removeprefix("HL")
    chars = "".join(_READ_AS.get(c, c) for c in chars)
    if len(chars) != 8 or any(c not in _CROCKFORD for c in chars):
        return None
    return f"HL-{chars[:4]}-{chars[4:]}"


def _reference_prefix(reference: str) -> str:
    """The first 10 hex digits of any case id whose reference this is."""
    n = 0
    for c in reference.replace("HL-", "").replace("-", ""):
        n = n * 32 + _CROCKFORD.index(c)
    hex10 = f"{n:010x}"
    return f"{hex10[:8]}-{hex10[8:]}"


async def _assemble(conn: Conn, row: Any, *, contacts: bool) -> CaseView:
    case_id: uuid.UUID = row["case_id"]
    decision_rows = await conn.fetch(_DECISIONS, case_id)
    decisions = [_decision(d) for d in decision_rows]
    decided = {d["event_id"] for d in decision_rows}
    esc_rows = await conn.fetch(_ESCALATIONS, case_id)
    ids = [e["escalation_id"] for e in esc_rows]
    states: dict[uuid.UUID, list[StateView]] = defaultdict(list)
    for s in await conn.fetch(_STATES, case_id):
        states[s["escalation_id"]].append(
            StateView(
                state=s["state"],
                occurred_at=s["occurred_at"],
                decision=s["decision"],
                actor=s["actor"],
                note=s["note"],
            )
        )
    attempts: dict[uuid.UUID, list[AttemptView]] = defaultdict(list)
    done: dict[uuid.UUID, Any] = {}  # command id -> the activity that reported it
    unmatched: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for a in await conn.fetch(_ACTIVITY, ids):
        if a["kind"] != "practitioner":
            attempts[a["escalation_id"]].append(
                AttemptView(
                    started_at=a["started_at"],
                    finished_at=a["finished_at"],
                    kind=a["kind"],
                    http_status=a["http_status"],
                    result=a["result"],
                    error=a["error"],
                )
            )
        elif a["command_id"] is not None:
            done[a["command_id"]] = a
        else:
            unmatched[a["escalation_id"]].append(a)
    actions: dict[uuid.UUID | None, list[ActionView]] = defaultdict(list)
    for c in await conn.fetch(_COMMANDS, case_id, ids):
        reported = done.pop(c["command_id"], None)
        if c["action"] == "retriage" and retriaged_event_id(c["command_id"]) in decided:
            reported = {"result": "ok", "error": None}
        actions[c["escalation_id"]].append(
            ActionView(
                command_id=c["command_id"],
                at=c["issued_at"],
                actor=c["actor"],
                action=c["action"],
                note=c["note"],
                result=(reported["result"] or "ok") if reported else "pending",
                error=reported["error"] if reported else None,
                platform_reference=c["platform_reference"],
                decision=c["decision"],
            )
        )
    # Actions casework holds no command of (issued before this read model was built).
    for a in [*done.values(), *(x for xs in unmatched.values() for x in xs)]:
        actions[a["escalation_id"]].append(
            ActionView(
                command_id=a["command_id"],
                at=a["started_at"],
                actor=a["actor"],
                action=a["action"] or "escalated_by_hand",
                note=a["note"],
                result=a["result"] or "ok",
                error=a["error"],
            )
        )
    order = {url: n for n, url in enumerate(row["urls"])}
    escalations = [
        EscalationView(
            escalation_id=e["escalation_id"],
            url_id=e["url_id"],
            url=e["url"],
            platform=e["platform"],
            route=e["route"],
            state=e["state"],
            decision=e["decision"],
            platform_reference=e["platform_reference"],
            reason=e["reason"],
            due_at=e["due"],
            overdue=bool(e["overdue"]),
            # Follow-ups sent so far: each is an activity event; an outcome carries the count
            # only when a state is reached, so the larger of the two is the latest.
            followups=max(
                e["followups"] or 0,
                sum(
                    1
                    for a in attempts[e["escalation_id"]]
                    if a.kind == "followup" and a.result == "ok"
                ),
            ),
            attempts=attempts[e["escalation_id"]],
            actions=sorted(actions[e["escalation_id"]], key=lambda a: a.at),
            states=states[e["escalation_id"]],
        )
        for e in sorted(esc_rows, key=lambda e: (order.get(e["url"], len(order)), e["url"]))
    ]
    reporter = None
    if contacts:
        r = await conn.fetchrow(_REPORTER, case_id)
        if r is not None:
            reporter = ReporterView(
                name=r["name"], email=r["email"], role=r["role"], erased=r["erased_at"] is not None
            )
    prior = _json(row["prior_report"])
    return CaseView(
        case_id=case_id,
        reference=case_reference(case_id),
        source=row["source"],
        report_id=row["report_id"],
        received_at=row["received_at"],
        organisation=row["organisation"],
        description=row["description"],
        urls=list(row["urls"]),
        issue_types=list(row["issue_types"]),
        child_affected=row["child_affected"],
        prior_report=PriorReport.model_validate(prior) if prior else None,
        reporter=reporter,
        decision=decisions[-1] if decisions else None,
        decisions=decisions,
        escalations=escalations,
        retriages=actions[None],
        overdue=any(e.overdue for e in escalations),
    )


def _decision(d: Any) -> DecisionView:
    return DecisionView(
        revision=d["revision"],
        triaged_at=d["triaged_at"],
        harm_types=list(d["harm_types"]),
        lead_harm_type=d["lead_harm_type"],
        urgency=d["urgency"],
        route=d["route"],
        rules_fired=list(d["rules_fired"]),
        matches=[RuleMatch.model_validate(m) for m in _json(d["matches"])],
        rules_version=d["rules_version"],
        decision_due_at=d["decision_due_at"],
        overridden_by=d["overridden_by"],
        override_note=d["override_note"],
        urls=[TriagedUrl.model_validate(u) for u in _json(d["urls"])],
    )


_LIST = """
WITH agg AS (
    SELECT case_id, array_agg(DISTINCT platform) AS platforms,
           array_agg(DISTINCT state) AS states, bool_or(overdue) AS overdue
    FROM casework.escalation_status GROUP BY case_id
)
SELECT c.case_id, c.received_at, c.organisation, d.urgency, d.route,
       COALESCE(
           (SELECT array_agg(DISTINCT u->>'platform') FROM jsonb_array_elements(d.urls) u),
           '{}') AS decided_platforms,
       COALESCE(a.platforms, '{}') AS platforms, COALESCE(a.states, '{}') AS states,
       COALESCE(a.overdue, false) AS overdue
FROM casework.cases c
LEFT JOIN casework.current_decisions d USING (case_id)
LEFT JOIN agg a USING (case_id)
WHERE ($1::text IS NULL OR $1 = ANY (a.states))
  AND ($2::text IS NULL OR d.urgency = $2)
  AND ($3::text IS NULL OR $3 = ANY (a.platforms)
       OR d.urls @> jsonb_build_array(jsonb_build_object('platform', $3::text)))
  AND ($4::boolean IS NULL OR COALESCE(a.overdue, false) = $4)
ORDER BY c.received_at DESC, c.case_id
LIMIT $5 OFFSET $6
"""


async def list_cases(conn: Conn, f: CaseFilters) -> list[CaseSummary]:
    """Known cases matching every filter given, newest first (received), `f.limit` at most."""
    rows = await conn.fetch(_LIST, f.state, f.urgency, f.platform, f.overdue, f.limit, f.offset)
    return [
        CaseSummary(
            case_id=r["case_id"],
            reference=case_reference(r["case_id"]),
            received_at=r["received_at"],
            organisation=r["organisation"],
            urgency=r["urgency"],
            route=r["route"],
            platforms=sorted({*r["platforms"], *r["decided_platforms"]}),
            states=sorted(r["states"]),
            overdue=r["overdue"],
        )
        for r in rows
    ]


# An escalation waits for a person when the machine cannot go on: it needs manual handling,
# failed, is overdue with no decision, goes to the hotline and is not yet closed, or has an
# appeal to make by hand (no automated appeal route: the escalator's reason says so).
_QUEUE = """
WITH waiting AS (
    SELECT s.*,
           CASE s.urgency WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'normal' THEN 2
                ELSE 3 END AS urgency_rank,
           COALESCE(s.reason, CASE
               WHEN s.route = 'hotline' THEN 'hotline route: child sexual imagery'
               WHEN s.overdue THEN 'platform decision overdue'
               WHEN s.state = 'failed' THEN 'escalation failed'
               ELSE 'needs a person' END) AS why
    FROM casework.escalation_status s
    WHERE s.state IN ('needs_manual', 'failed')
       OR s.overdue
       OR (s.route = 'hotline' AND s.state NOT IN ('decided', 'closed', 'withdrawn'))
       OR (s.state = 'appealed' AND s.reason LIKE 'no automated appeal route%')
), one AS (
    SELECT DISTINCT ON (escalation_id) *,
           min(urgency_rank) OVER (PARTITION BY escalation_id) AS best_rank,
           bool_or(overdue) OVER (PARTITION BY escalation_id) AS any_overdue
    FROM waiting
    ORDER BY escalation_id, received_at, case_id
), aged AS (
    -- Waiting since the first of its latest run of states that wait for a person (waiting
    -- for a person, then breached, is one wait; a breach after a notice starts one).
    SELECT one.*,
           COALESCE((
               SELECT min(st.occurred_at) FROM casework.states st
               WHERE st.case_id = one.case_id AND st.escalation_id = one.escalation_id
                 AND st.occurred_at <= one.state_since
                 AND st.occurred_at > COALESCE((
                     SELECT max(x.occurred_at) FROM casework.states x
                     WHERE x.case_id = one.case_id AND x.escalation_id = one.escalation_id
                       AND x.occurred_at <= one.state_since
                       AND NOT (x.state IN ('needs_manual', 'failed', 'breached')
                                OR (one.route = 'hotline' AND x.state = 'submitted'))),
                     '-infinity')
           ), one.state_since) AS waiting_since
    FROM one
)
SELECT escalation_id, case_id, url, platform, route, state, why,
       waiting_since AS state_since, due, any_overdue AS overdue, best_rank,
       GREATEST(0, EXTRACT(EPOCH FROM now() - waiting_since))::bigint AS age_s
FROM aged
WHERE ($1::text IS NULL OR strpos(lower(why), lower($1)) > 0
       OR lower($1) = ANY (ARRAY[
           state,
           CASE WHEN route = 'hotline' THEN 'hotline' END,
           CASE WHEN any_overdue THEN 'overdue' END,
           CASE WHEN route = 'manual' OR state = 'needs_manual'
                     OR why LIKE 'no automated appeal route%' THEN 'manual' END]))
  AND ($2::text IS NULL OR platform = $2)
  AND ($3::int IS NULL OR best_rank = $3)
  AND ($4::bigint IS NULL OR waiting_since <= now() - make_interval(secs => $4))
ORDER BY (route = 'hotline') DESC NULLS LAST, any_overdue DESC, best_rank, waiting_since,
         escalation_id
LIMIT $5
"""
_URGENCIES: tuple[Urgency, ...] = ("critical", "high", "normal")


async def queue(conn: Conn, f: QueueFilters) -> list[QueueItem]:
    """Escalations waiting for a person, most pressing first: hotline, overdue, critical,
    high, normal, then the longest waiting. One item per escalation, however many cases
    reported its content (named by the first of them, with the most urgent one's urgency)."""
    rank = None if f.urgency is None else _URGENCIES.index(f.urgency)
    rows = await conn.fetch(_QUEUE, f.reason, f.platform, rank, f.min_age_s, f.limit)
    return [
        QueueItem(
            escalation_id=r["escalation_id"],
            case_id=r["case_id"],
            reference=case_reference(r["case_id"]),
            url=r["url"],
            platform=r["platform"],
            route=r["route"],
            urgency=_URGENCIES[r["best_rank"]] if r["best_rank"] < len(_URGENCIES) else None,
            state=r["state"],
            reason=r["why"],
            waiting_since=r["state_since"],
            age_s=int(r["age_s"]),
            due_at=r["due"],
            overdue=bool(r["overdue"]),
        )
        for r in rows
    ]
