"""Folding events into running totals, exactly once per event id.

Each batch runs in one transaction (replicas serialise on per-id advisory locks): the inbox
keeps the ids of events already counted (redelivery and replays count nothing twice), and
two tables keep the latest state of what is counted, so a later state moves one count to
another and an older or repeated state changes nothing, whatever order the topics deliver
in. `metrics.counters` holds the all-time totals.

Which state is later: the one reached later (`occurred_at`), the rank (`STATE_RANK`)
breaking ties, then the name. States do not only move forward: a person escalates by hand
what waited for them or failed (`submitted` again), records the platform's decision
(`decided` with an `actor`: counted as any decision, and in `manual_decisions`) or closes
it as advice only (`closed`: no longer open, not a decision), an appeal follows a decision
(`appealed`, then `appeal_decided`, whose `decision` replaces the content's decision, so
the takedown figures count the final one; the first decision's time stays the time to
decision), and a re-triage withdraws a pending notice (`withdrawn`: no longer open, not a
decision). A URL report follows its case's latest escalation: after a re-triage moved it
to another escalation, a state of the new one replaces the old one's `withdrawn`, and the
old one's `withdrawn` never replaces a state of the new one.

A case is counted once: a superseding triage decision (a practitioner's re-triage,
`revision` > 1) replaces the case's harm types, urgency and deadline in every figure, and an
older revision arriving after a newer one changes nothing.

Beside the counters, the facts each figure per period, platform and harm type is computed
from (:mod:`helpline_metrics.figures`): `metrics.cases` (one row per triaged case), the
escalations' `received_at`, `decided_at` and exact `decision_seconds`, each URL report's
escalation and decision time, and `metrics.breaches` (URL reports an outcome in state
`breached` named, once per URL report and escalation: a breach moves no state, the
escalation stays open).

Every statement names its tables in `schema` (default `metrics`): `helpline metrics
rebuild` folds the same events with the same code into a fresh schema and swaps it in.

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
from datetime import UTC, datetime

from helpline_shared.db import Conn
from helpline_shared.events import (
    TAKEDOWN_DECISIONS,
    CaseTriagedV1,
    EscalationOutcomeV1,
    ReportRejectedV1,
)

SCHEMAS = ("metrics", "metrics_rebuild")
# Breaks ties between states reached at the same moment (a decision at submission).
STATE_RANK = {
    "queued": 0,
    "submitted": 1,
    "needs_manual": 2,
    "decided": 3,
    "failed": 3,
    "closed": 3,
    "withdrawn": 3,
    "appealed": 4,
    "appeal_decided": 5,
}
NOTIFIED = ("submitted", "decided")
# States in which the content has a platform decision (an appeal keeps or replaces it).
DECIDED_STATES = frozenset({"decided", "appealed", "appeal_decided"})
APPEAL_STATES = frozenset({"appealed", "appeal_decided"})
_NEVER = datetime.min.replace(tzinfo=UTC)

Event = CaseTriagedV1 | EscalationOutcomeV1 | ReportRejectedV1


@dataclass
class _Esc:
    case_id: uuid.UUID
    platform: str
    state: str
    rank: int
    decision: str | None
    notified: bool = False
    received_at: datetime | None = None
    decided_at: datetime | None = None
    decision_seconds: int | None = None
    escalation_id: uuid.UUID | None = None
    occurred_at: datetime | None = None
    overturned: bool | None = None
    manual: bool = False

    @property
    def order(self) -> tuple[datetime, int, str]:
        """Later states compare greater (a row counted before its time was kept: earliest)."""
        return (self.occurred_at or _NEVER, self.rank, self.state)


def _move(counts: Counter[tuple[str, str]], esc: _Esc, delta: int) -> None:
    counts["escalations_by_state", esc.state] += delta
    counts["escalations_by_platform_state", f"{esc.platform}:{esc.state}"] += delta
    if esc.state in DECIDED_STATES:
        if esc.decision_seconds is not None:
            counts["decision_seconds", esc.platform] += delta * esc.decision_seconds
        if esc.decision:
            counts["decisions", esc.decision] += delta
            if esc.decision in TAKEDOWN_DECISIONS:
                counts["takedowns", ""] += delta


def _move_report(counts: Counter[tuple[str, str]], report: _Esc, delta: int) -> None:
    counts["url_reports_by_state", report.state] += delta
    if report.state in DECIDED_STATES and report.decision in TAKEDOWN_DECISIONS:
        counts["url_report_takedowns", ""] += delta


class _Latest:
    """The latest known state of each id of one table, moving its counts as it changes."""

    def __init__(self, schema: str, table: str, key: str, counts: Counter[tuple[str, str]]) -> None:
        self.schema, self.table, self.key, self.counts = schema, table, key, counts
        self.current: dict[uuid.UUID, _Esc] = {}
        self.changed: set[uuid.UUID] = set()

    async def load(self, conn: Conn, ids: set[uuid.UUID]) -> None:
        rows = await conn.fetch(
            f"SELECT * FROM {self.schema}.{self.table} "
            f"WHERE {self.key} = ANY($1::uuid[]) FOR UPDATE",
            list(ids),
        )
        for r in rows:
            notified = bool(r.get("notified", False))
            self.current[r[self.key]] = _Esc(
                r["case_id"],
                r["platform"],
                r["state"],
                r["rank"],
                r["decision"],
                notified,
                r["received_at"],
                r["decided_at"],
                r.get("decision_seconds"),
                r.get("escalation_id"),
                r["occurred_at"],
                r.get("overturned"),
                bool(r.get("manual", False)),
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
        move = _move if self.table == "escalations" else _move_report
        if old is not None and not self._replaces(old, new):
            if old.escalation_id is None and new.escalation_id is not None:
                old.escalation_id = new.escalation_id  # a report's escalation, once known
                self.changed.add(eid)
            if old.state in APPEAL_STATES and new.state == "decided" and old.decided_at is None:
                # The decision an appeal contests, heard after the appeal: its facts count.
                move(self.counts, old, -1)
                old.decision = old.decision or new.decision
                old.decided_at = new.decided_at
                old.decision_seconds = new.decision_seconds
                old.manual = new.manual
                move(self.counts, old, +1)
                self.changed.add(eid)
            return False
        if old is not None:
            move(self.counts, old, -1)
            new.notified = new.notified or old.notified
            new.received_at = old.received_at or new.received_at
            new.escalation_id = new.escalation_id or old.escalation_id
            if new.state in APPEAL_STATES and old.state in DECIDED_STATES:
                # The appeal contests that decision: its time and who recorded it stay.
                new.decision = new.decision or old.decision
                new.decided_at = old.decided_at
                new.decision_seconds = old.decision_seconds
                new.manual = old.manual
        elif self.table == "escalations":
            self.counts["escalations_total", ""] += 1
        move(self.counts, new, +1)
        self.current[eid] = new
        self.changed.add(eid)
        return True

    def _replaces(self, old: _Esc, new: _Esc) -> bool:
        """Whether `new` is later than `old` (see the module's note on re-triage)."""
        if (
            self.table == "url_reports"
            and old.escalation_id is not None
            and new.escalation_id is not None
            and old.escalation_id != new.escalation_id
        ):
            if new.state == "withdrawn":
                return False
            if old.state == "withdrawn":
                return True
        return new.order > old.order

    async def store(self, conn: Conn) -> None:
        if not self.changed:
            return
        ordered = sorted(self.changed)
        rows = [self.current[i] for i in ordered]
        columns: list[tuple[str, str, list[object]]] = [
            (self.key, "uuid", list(ordered)),
            ("case_id", "uuid", [r.case_id for r in rows]),
            ("platform", "text", [r.platform for r in rows]),
            ("state", "text", [r.state for r in rows]),
            ("rank", "int", [r.rank for r in rows]),
            ("decision", "text", [r.decision for r in rows]),
            ("received_at", "timestamptz", [r.received_at for r in rows]),
            ("decided_at", "timestamptz", [r.decided_at for r in rows]),
            ("occurred_at", "timestamptz", [r.occurred_at for r in rows]),
        ]
        if self.table == "escalations":
            columns += [
                ("notified", "bool", [r.notified for r in rows]),
                ("decision_seconds", "bigint", [r.decision_seconds for r in rows]),
                ("overturned", "bool", [r.overturned for r in rows]),
                ("manual", "bool", [r.manual for r in rows]),
            ]
        else:
            columns.append(("escalation_id", "uuid", [r.escalation_id for r in rows]))
        names = ", ".join(c[0] for c in columns)
        arrays = ", ".join(f"${n}::{c[1]}[]" for n, c in enumerate(columns, 1))
        updates = ", ".join(f"{c[0]} = EXCLUDED.{c[0]}" for c in columns[3:])
        await conn.execute(
            f"""
            INSERT INTO {self.schema}.{self.table} AS m ({names})
            SELECT * FROM unnest({arrays})
            ON CONFLICT ({self.key}) DO UPDATE SET {updates}
            """,
            *[c[2] for c in columns],
        )


async def apply(conn: Conn, events: Sequence[Event], schema: str = "metrics") -> int:
    """Count the events not counted before into the tables of `schema`; returns how many
    were new."""
    if schema not in SCHEMAS:
        raise ValueError(f"unknown metrics schema {schema!r}")
    if not events:
        return 0
    fresh_ids = {
        r["event_id"]
        for r in await conn.fetch(
            f"""INSERT INTO {schema}.inbox (event_id) SELECT unnest($1::uuid[])
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
    case_ids: set[uuid.UUID] = set()
    for e in fresh:
        if isinstance(e, CaseTriagedV1):
            case_ids.add(e.case_id)
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
        list(contents | reports | case_ids),
    )
    escalations = _Latest(schema, "escalations", "escalation_id", counts)
    url_reports = _Latest(schema, "url_reports", "url_id", counts)
    cases = _Cases(schema, counts)
    breaches: list[EscalationOutcomeV1] = []
    await escalations.load(conn, contents)
    await url_reports.load(conn, reports)
    await cases.load(conn, case_ids)

    for e in fresh:
        if isinstance(e, CaseTriagedV1):
            cases.observe(e)
            for u in e.urls:
                url_reports.observe(
                    u.url_id,
                    _Esc(e.case_id, u.platform, "queued", 0, None, received_at=e.received_at),
                )
        elif isinstance(e, EscalationOutcomeV1):
            if not _outcome(e, escalations, url_reports):
                breaches.append(e)
        else:
            counts["reports_rejected_total", ""] += 1
            for kind in {r.type for r in e.reasons}:  # e.g. "conflict"
                counts["reports_rejected_by_type", kind] += 1

    await escalations.store(conn)
    await url_reports.store(conn)
    await cases.store(conn)
    await _store_breaches(conn, schema, breaches)
    # Sorted: concurrent replicas lock counter rows in one order, so they cannot deadlock.
    nonzero = sorted((k, v) for k, v in counts.items() if v != 0)
    if nonzero:
        await conn.execute(
            f"""
            INSERT INTO {schema}.counters AS c (name, label, value)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
            ON CONFLICT (name, label) DO UPDATE SET value = c.value + EXCLUDED.value
            """,
            [k[0] for k, _ in nonzero],
            [k[1] for k, _ in nonzero],
            [v for _, v in nonzero],
        )
    return len(fresh)


def _outcome(e: EscalationOutcomeV1, escalations: _Latest, url_reports: _Latest) -> bool:
    """Folds an outcome into the latest states; False for a `breached` outcome, which moves
    no state (recorded apart)."""
    state: str = e.state
    if state == "breached":
        return False
    rank = STATE_RANK[state]
    decided_at = e.occurred_at if state == "decided" else None
    url_reports.observe(
        e.url_id or e.escalation_id,
        _Esc(
            e.case_id,
            e.platform,
            e.state,
            rank,
            e.decision,
            received_at=e.received_at,
            decided_at=decided_at,
            escalation_id=e.escalation_id,
            occurred_at=e.occurred_at,
        ),
    )
    # Time from the first report of the content reaching intake to the decision.
    opened = e.first_received_at or e.received_at
    waited = max(0, round((e.occurred_at - opened).total_seconds()))
    decided = e.state == "decided"
    escalations.observe(
        e.escalation_id,
        _Esc(
            e.case_id,
            e.platform,
            e.state,
            rank,
            e.decision,
            received_at=opened,
            decided_at=decided_at,
            decision_seconds=waited if decided else None,
            occurred_at=e.occurred_at,
            overturned=e.overturned if e.state == "appeal_decided" else None,
            manual=decided and e.actor is not None,
        ),
    )
    return True


@dataclass
class _Case:
    """A case as its latest triage decision counts it."""

    revision: int
    received_at: datetime  # the case's period: when a simulated case was published
    urgency: str
    harm_types: list[str]
    platforms: list[str]
    urls: int
    decision_due_at: datetime | None

    @classmethod
    def of(cls, e: CaseTriagedV1) -> _Case:
        return cls(
            e.revision,
            e.period_at or e.received_at,
            e.urgency,
            sorted(set(e.harm_types)),
            sorted({u.platform for u in e.urls}),
            len(e.urls),
            e.decision_due_at,
        )

    def count(self, counts: Counter[tuple[str, str]], delta: int) -> None:
        counts["urls_total", ""] += delta * self.urls
        counts["cases_by_urgency", self.urgency] += delta
        for harm in self.harm_types:
            counts["cases_by_harm_type", harm] += delta
        for platform in self.platforms:
            counts["cases_by_platform", platform] += delta


class _Cases:
    """Each case's latest triage decision (`metrics.cases`), moving its counts as a
    superseding decision replaces it."""

    def __init__(self, schema: str, counts: Counter[tuple[str, str]]) -> None:
        self.schema, self.counts = schema, counts
        self.current: dict[uuid.UUID, _Case] = {}
        self.changed: set[uuid.UUID] = set()

    async def load(self, conn: Conn, ids: set[uuid.UUID]) -> None:
        rows = await conn.fetch(
            f"SELECT * FROM {self.schema}.cases WHERE case_id = ANY($1::uuid[]) FOR UPDATE",
            list(ids),
        )
        for r in rows:
            self.current[r["case_id"]] = _Case(
                r["revision"],
                r["received_at"],
                r["urgency"],
                list(r["harm_types"]),
                list(r["platforms"]),
                r["urls"],
                r["decision_due_at"],
            )

    def observe(self, e: CaseTriagedV1) -> None:
        old = self.current.get(e.case_id)
        if old is not None and old.revision >= e.revision:
            return  # this decision or a later one is counted
        new = _Case.of(e)
        if old is None:
            self.counts["cases_total", ""] += 1
        else:
            old.count(self.counts, -1)
        new.count(self.counts, +1)
        self.current[e.case_id] = new
        self.changed.add(e.case_id)

    async def store(self, conn: Conn) -> None:
        if not self.changed:
            return
        ids = sorted(self.changed)
        rows = [self.current[i] for i in ids]
        await conn.execute(
            f"""
            INSERT INTO {self.schema}.cases AS m (case_id, received_at, urgency, harm_types,
                platforms, urls, decision_due_at, revision)
            SELECT c.case_id, c.received_at, c.urgency,
                   string_to_array(c.harm, ' '), string_to_array(c.platforms, ' '), c.urls,
                   c.due, c.revision
            FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                        $6::int[], $7::timestamptz[], $8::int[])
                 AS c(case_id, received_at, urgency, harm, platforms, urls, due, revision)
            ON CONFLICT (case_id) DO UPDATE SET received_at = EXCLUDED.received_at,
                urgency = EXCLUDED.urgency, harm_types = EXCLUDED.harm_types,
                platforms = EXCLUDED.platforms, urls = EXCLUDED.urls,
                decision_due_at = EXCLUDED.decision_due_at, revision = EXCLUDED.revision
            """,
            ids,
            [r.received_at for r in rows],
            [r.urgency for r in rows],
            # Space-separated slugs (harm types and platforms never contain a space).
            [" ".join(r.harm_types) for r in rows],
            [" ".join(r.platforms) for r in rows],
            [r.urls for r in rows],
            [r.decision_due_at for r in rows],
            [r.revision for r in rows],
        )


async def _store_breaches(conn: Conn, schema: str, breaches: list[EscalationOutcomeV1]) -> None:
    if not breaches:
        return
    await conn.execute(
        f"""
        INSERT INTO {schema}.breaches (url_id, escalation_id, case_id, platform, occurred_at)
        SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::timestamptz[])
        ON CONFLICT (url_id, escalation_id) DO NOTHING
        """,
        [e.url_id or e.escalation_id for e in breaches],
        [e.escalation_id for e in breaches],
        [e.case_id for e in breaches],
        [e.platform for e in breaches],
        [e.occurred_at for e in breaches],
    )
