"""Folding events into running totals, exactly once per event id.

Each batch runs in one transaction (replicas serialise on per-id advisory locks): the inbox
keeps the ids of events already counted (redelivery and replays count nothing twice), and
two tables keep the latest state of what is counted, so a later state moves one count to
another and an older or repeated state changes nothing, whatever order the topics deliver
in. `metrics.counters` holds the totals.

Two levels, as the published report counts them:
- URL reports (`metrics.url_reports`, per case and URL): every triaged URL of every case,
  `queued` until its case hears an outcome (keyed by the event's `url_id`; events from
  before shared escalations have `url_id` = `escalation_id`).
- Escalations (`metrics.escalations`, per distinct content): counted from their first
  outcome; every linked case gets the same states, so they move the content once.
  `urls_escalated` counts the content a platform was notified of (submitted or decided,
  whatever came after); decisions, takedowns and time to decision are per content.
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
NOTIFIED = ("submitted", "decided")

Event = CaseTriagedV1 | EscalationOutcomeV1 | ReportRejectedV1


@dataclass
class _Esc:
    case_id: uuid.UUID
    platform: str
    state: str
    rank: int
    decision: str | None
    notified: bool = False


def _move(counts: Counter[tuple[str, str]], esc: _Esc, delta: int) -> None:
    counts["escalations_by_state", esc.state] += delta
    counts["escalations_by_platform_state", f"{esc.platform}:{esc.state}"] += delta
    if esc.state == "decided" and esc.decision:
        counts["decisions", esc.decision] += delta
        if esc.decision in TAKEDOWN_DECISIONS:
            counts["takedowns", ""] += delta


def _move_report(counts: Counter[tuple[str, str]], report: _Esc, delta: int) -> None:
    counts["url_reports_by_state", report.state] += delta
    if report.state == "decided" and report.decision in TAKEDOWN_DECISIONS:
        counts["url_report_takedowns", ""] += delta


class _Latest:
    """The latest known state of each id of one table, moving its counts as it changes."""

    def __init__(self, table: str, key: str, counts: Counter[tuple[str, str]]) -> None:
        self.table, self.key, self.counts = table, key, counts
        self.current: dict[uuid.UUID, _Esc] = {}
        self.changed: set[uuid.UUID] = set()

    async def load(self, conn: Conn, ids: set[uuid.UUID]) -> None:
        rows = await conn.fetch(
            f"SELECT * FROM metrics.{self.table} WHERE {self.key} = ANY($1::uuid[]) FOR UPDATE",
            list(ids),
        )
        for r in rows:
            notified = bool(r.get("notified", False))
            self.current[r[self.key]] = _Esc(
                r["case_id"], r["platform"], r["state"], r["rank"], r["decision"], notified
            )

    def observe(self, eid: uuid.UUID, new: _Esc) -> bool:
        """Move `eid` to `new` if it is later than what is known; True if moved."""
        old = self.current.get(eid)
        if self.table == "escalations" and new.state in NOTIFIED:
            if old is not None and not old.notified:
                old.notified = True
                self.changed.add(eid)
                self.counts["urls_escalated", ""] += 1
            elif old is None:
                new.notified = True
                self.counts["urls_escalated", ""] += 1
        if old is not None and old.rank >= new.rank:
            return False
        move = _move if self.table == "escalations" else _move_report
        if old is not None:
            move(self.counts, old, -1)
            new.notified = new.notified or old.notified
        elif self.table == "escalations":
            self.counts["escalations_total", ""] += 1
        move(self.counts, new, +1)
        self.current[eid] = new
        self.changed.add(eid)
        return True

    async def store(self, conn: Conn) -> None:
        if not self.changed:
            return
        ordered = sorted(self.changed)
        rows = [self.current[i] for i in ordered]
        notified = ", notified" if self.table == "escalations" else ""
        await conn.execute(
            f"""
            INSERT INTO metrics.{self.table} AS m
                ({self.key}, case_id, platform, state, rank, decision{notified})
            SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::int[],
                                 $6::text[]{", $7::bool[]" if notified else ""})
            ON CONFLICT ({self.key}) DO UPDATE
            SET state = EXCLUDED.state, rank = EXCLUDED.rank, decision = EXCLUDED.decision
                {", notified = EXCLUDED.notified" if notified else ""}
            """,
            ordered,
            [r.case_id for r in rows],
            [r.platform for r in rows],
            [r.state for r in rows],
            [r.rank for r in rows],
            [r.decision for r in rows],
            *([[r.notified for r in rows]] if notified else []),
        )


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

    contents: set[uuid.UUID] = set()
    reports: set[uuid.UUID] = set()
    for e in fresh:
        if isinstance(e, CaseTriagedV1):
            reports.update(u.url_id for u in e.urls)
        elif isinstance(e, EscalationOutcomeV1):
            contents.add(e.escalation_id)
            reports.add(e.url_id or e.escalation_id)
    # Serialise with any other replica folding events of the same ids (a row that does not
    # exist yet cannot be locked with FOR UPDATE). Sorted, so no deadlock.
    await conn.execute(
        """SELECT pg_advisory_xact_lock(h) FROM (
               SELECT DISTINCT hashtextextended(id::text, 0) AS h
               FROM unnest($1::uuid[]) AS id ORDER BY h) AS locks""",
        list(contents | reports),
    )
    escalations = _Latest("escalations", "escalation_id", counts)
    url_reports = _Latest("url_reports", "url_id", counts)
    await escalations.load(conn, contents)
    await url_reports.load(conn, reports)

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
                url_reports.observe(u.url_id, _Esc(e.case_id, u.platform, "queued", 0, None))
        elif isinstance(e, EscalationOutcomeV1):
            rank = STATE_RANK[e.state]
            url_reports.observe(
                e.url_id or e.escalation_id, _Esc(e.case_id, e.platform, e.state, rank, e.decision)
            )
            moved = escalations.observe(
                e.escalation_id, _Esc(e.case_id, e.platform, e.state, rank, e.decision)
            )
            if moved and e.state == "decided":
                # Time from the first report of the content reaching intake to the decision.
                waited = (e.occurred_at - (e.first_received_at or e.received_at)).total_seconds()
                counts["decision_seconds", e.platform] += max(0, round(waited))
        else:
            counts["reports_rejected_total", ""] += 1
            for kind in {r.type for r in e.reasons}:  # e.g. "conflict"
                counts["reports_rejected_by_type", kind] += 1

    await escalations.store(conn)
    await url_reports.store(conn)
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
