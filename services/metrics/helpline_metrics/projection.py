"""Folding events into running totals, exactly once per event id.

Each batch runs in one transaction (replicas serialise on per-escalation advisory locks):
the inbox keeps the ids of events already counted
(redelivery and replays count nothing twice), `metrics.escalations` keeps each
escalation's latest state (a later state moves the escalation from one count to another;
an older or repeated state changes nothing, whatever order the topics deliver in), and
`metrics.counters` holds the totals.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from helpline_shared.db import Conn
from helpline_shared.events import (
    TAKEDOWN_DECISIONS,
    CaseTriagedV1,
    EscalationOutcomeV1,
    ReportRejectedV1,
)

STATE_RANK = {"queued": 0, "submitted": 1, "needs_manual": 2, "decided": 3, "failed": 3}

Event = CaseTriagedV1 | EscalationOutcomeV1 | ReportRejectedV1


@dataclass
class _Esc:
    case_id: uuid.UUID
    platform: str
    state: str
    rank: int
    decision: str | None


def _move(counts: Counter[tuple[str, str]], esc: _Esc, delta: int) -> None:
    counts["escalations_by_state", esc.state] += delta
    counts["escalations_by_platform_state", f"{esc.platform}:{esc.state}"] += delta
    if esc.state == "decided" and esc.decision:
        counts["decisions", esc.decision] += delta
        if esc.decision in TAKEDOWN_DECISIONS:
            counts["takedowns", ""] += delta


async def apply(conn: Conn, events: Sequence[Event]) -> int:
    """Count the events not counted before; returns how many were new."""
    if not events:
        return 0
    fresh_ids = {
        r["event_id"]
        for r in await conn.fetch(
            """INSERT INTO metrics.inbox (event_id) SELECT unnest($1::uuid[])
               ON CONFLICT DO NOTHING RETURNING event_id""",
            [e.event_id for e in events],
        )
    }
    fresh: list[Event] = []
    for e in events:
        if e.event_id in fresh_ids:  # first occurrence only, even within one batch
            fresh_ids.remove(e.event_id)
            fresh.append(e)
    counts: Counter[tuple[str, str]] = Counter()

    touched: set[uuid.UUID] = set()
    for e in fresh:
        if isinstance(e, CaseTriagedV1):
            touched.update(u.url_id for u in e.urls)
        elif isinstance(e, EscalationOutcomeV1):
            touched.add(e.escalation_id)
    # Serialise with any other replica folding events of the same escalations (a row that
    # does not exist yet cannot be locked with FOR UPDATE). Sorted, so no deadlock.
    await conn.execute(
        """SELECT pg_advisory_xact_lock(h) FROM (
               SELECT DISTINCT hashtextextended(id::text, 0) AS h
               FROM unnest($1::uuid[]) AS id ORDER BY h) AS locks""",
        list(touched),
    )
    current: dict[uuid.UUID, _Esc] = {
        r["escalation_id"]: _Esc(r["case_id"], r["platform"], r["state"], r["rank"], r["decision"])
        for r in await conn.fetch(
            """SELECT * FROM metrics.escalations WHERE escalation_id = ANY($1::uuid[])
               FOR UPDATE""",
            list(touched),
        )
    }
    changed: set[uuid.UUID] = set()

    def observe(eid: uuid.UUID, new: _Esc) -> bool:
        """Move the escalation to `new` if it is later than what is known; True if moved."""
        old = current.get(eid)
        if old is not None and old.rank >= new.rank:
            return False
        if old is not None:
            _move(counts, old, -1)
        else:
            counts["escalations_total", ""] += 1
        _move(counts, new, +1)
        current[eid] = new
        changed.add(eid)
        return True

    for e in fresh:
        if isinstance(e, CaseTriagedV1):
            counts["cases_total", ""] += 1
            counts["urls_total", ""] += len(e.urls)
            counts["cases_by_urgency", e.urgency] += 1
            for harm in set(e.harm_types):
                counts["cases_by_harm_type", harm] += 1
            for platform in {u.platform for u in e.urls}:
                counts["cases_by_platform", platform] += 1
            for u in e.urls:
                observe(u.url_id, _Esc(e.case_id, u.platform, "queued", 0, None))
        elif isinstance(e, EscalationOutcomeV1):
            moved = observe(
                e.escalation_id,
                _Esc(e.case_id, e.platform, e.state, STATE_RANK[e.state], e.decision),
            )
            if moved and e.state == "decided":
                # Time from the report reaching intake to the platform's decision.
                waited = (e.occurred_at - e.received_at).total_seconds()
                counts["decision_seconds", e.platform] += max(0, round(waited))
        else:
            counts["reports_rejected_total", ""] += 1
            for kind in {r.type for r in e.reasons}:  # e.g. "conflict"
                counts["reports_rejected_by_type", kind] += 1

    if changed:
        ordered = sorted(changed)
        rows = [current[i] for i in ordered]
        await conn.execute(
            """
            INSERT INTO metrics.escalations AS m
                (escalation_id, case_id, platform, state, rank, decision)
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                                 $6::text[])
            ON CONFLICT (escalation_id) DO UPDATE
            SET state = EXCLUDED.state, rank = EXCLUDED.rank, decision = EXCLUDED.decision
            WHERE m.rank < EXCLUDED.rank
            """,
            ordered,
            [r.case_id for r in rows],
            [r.platform for r in rows],
            [r.state for r in rows],
            [r.rank for r in rows],
            [r.decision for r in rows],
        )
    # Sorted: concurrent replicas lock counter rows in one order, so they cannot deadlock.
    nonzero = sorted((k, v) for k, v in counts.items() if v != 0)
    if nonzero:
        await conn.execute(
            """
            INSERT INTO metrics.counters AS c (name, label, value)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
            ON CONFLICT (name, label) DO UPDATE SET value = c.value + EXCLUDED.value
            """,
            [k[0] for k, _ in nonzero],
            [k[1] for k, _ in nonzero],
            [v for _, v in nonzero],
        )
    return len(fresh)
