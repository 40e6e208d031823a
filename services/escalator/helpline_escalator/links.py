"""Linking triaged URLs to shared escalations: the same content is escalated once.

Identity: an escalation is the content, `derive_id("escalation", route, platform,
normalized_url)`. Two cases reporting the same canonical URL for the same platform share
one escalation: one notice, linked to every case. Routes never merge: a URL routed to the
hotline and the same URL routed to its platform are two escalations. `manual` URLs
(unknown host, no adapter, unreadable) are linked by their normalised form too, so a
practitioner handles the same URL once (a URL triage could not read is keyed by its
digest, so only the same text links).

Promises, all in the caller's transaction:
- Each (case, URL) is linked once: `(case_id, url_id)` is unique and inserts do nothing
  on conflict, so redelivery links and sends nothing twice (nor does a case triaged before
  shared escalations, whose link already exists).
- The escalation row is inserted on its content key with ON CONFLICT, so two processes
  linking different cases to the same content at once still make one row and one notice.
- A case linked to an existing escalation gets, at once, the events of every state it
  already reached (`outcomes.catch_up`), read while holding the escalation's row lock.
- While an escalation is still waiting to be sent (`queued`, `retrying`), a later case
  that is more urgent or names more harm types raises its urgency and adds its harm types
  (and, if its lead harm is more severe, its DSA category and reason code). A notice is
  never re-sent because a case was added.
- The escalation's `due_at` is the earliest `decision_due_at` of the cases linked to it
  (a case joining later with an earlier deadline brings it forward).
- Tracing: each link keeps the W3C `traceparent` given for its case (the processing of
  its case.triaged record; none when tracing is off), and every outcome event of that
  case carries it (see :mod:`helpline_escalator.outcomes`), so outcomes added later by a
  platform worker continue the case's trace.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from helpline_escalator.outcomes import Reached, announce, catch_up
from helpline_escalator.severity import most_severe_first, orders
from helpline_shared.db import Conn
from helpline_shared.events import CaseTriagedV1, TriagedUrl, derive_id, utcnow
from helpline_shared.kafka import OutgoingMessage

WAITING = ("queued", "retrying")  # not sent yet: its notice may still change

HOTLINE_REASON = "child sexual imagery: reported to the national hotline; a practitioner follows up"

MANUAL_REASONS = {
    "hotline": HOTLINE_REASON,
    "manual": "no automated channel for this host",
}


def escalation_id(url: TriagedUrl) -> uuid.UUID:
    """The content's escalation: the same for every case reporting it on this route."""
    return derive_id("escalation", url.route, url.platform, url.normalized_url)


def _more_urgent(a: str, b: str) -> str:
    rank = {u: i for i, u in enumerate(orders().urgencies)}
    return a if rank.get(a, len(rank)) <= rank.get(b, len(rank)) else b


def _lead_rank(harm_types: Sequence[str]) -> int:
    rank = {h: i for i, h in enumerate(orders().harm_types)}
    return min((rank.get(h, len(rank)) for h in harm_types), default=len(rank))


@dataclass
class Content:
    """What the new links of one escalation ask for, merged."""

    escalation_id: uuid.UUID
    opener: tuple[CaseTriagedV1, TriagedUrl]
    harm_types: list[str] = field(default_factory=list)
    urgency: str = "normal"
    dsa_category: str | None = None
    reason_code: str | None = None
    due_at: datetime | None = None  # the earliest decision_due_at of its new cases
    links: list[Any] = field(default_factory=list)

    def add(self, case: CaseTriagedV1, url: TriagedUrl) -> None:
        if case.decision_due_at is not None and (
            self.due_at is None or case.decision_due_at < self.due_at
        ):
            self.due_at = case.decision_due_at
        new_lead = _lead_rank(case.harm_types) < _lead_rank(self.harm_types)
        if new_lead or (self.dsa_category is None and self.reason_code is None):
            self.dsa_category = url.dsa_category or self.dsa_category
            self.reason_code = url.reason_code or self.reason_code
        self.harm_types = list(most_severe_first(set(self.harm_types) | set(case.harm_types)))
        self.urgency = _more_urgent(case.urgency, self.urgency) if self.links else case.urgency


async def _insert_links(
    conn: Conn,
    rows: list[tuple[CaseTriagedV1, TriagedUrl]],
    traceparents: Mapping[uuid.UUID, str],
) -> list[Any]:
    rows = sorted(rows, key=lambda r: (escalation_id(r[1]), r[0].case_id))
    return await conn.fetch(
        """
        INSERT INTO escalator.escalation_cases
            (escalation_id, case_id, url_id, url, harm_types, urgency, received_at,
             traceparent, revision)
        SELECT u.eid, u.case_id, u.url_id, u.url, string_to_array(u.harm, ','), u.urgency,
               u.received_at, u.traceparent, u.revision
        FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                    $7::timestamptz[], $8::text[], $9::int[])
            AS u(eid, case_id, url_id, url, harm, urgency, received_at, traceparent, revision)
        ON CONFLICT DO NOTHING
        RETURNING *
        """,
        [escalation_id(u) for _, u in rows],
        [c.case_id for c, _ in rows],
        [u.url_id for _, u in rows],
        [u.url for _, u in rows],
        [",".join(c.harm_types) for c, _ in rows],
        [c.urgency for c, _ in rows],
        [c.received_at for c, _ in rows],
        [traceparents.get(c.case_id) for c, _ in rows],
        [c.revision for c, _ in rows],
    )


async def _insert_escalations(conn: Conn, contents: list[Content]) -> list[Any]:
    """Insert the escalations not yet known, in id order; returns the rows inserted."""
    cs = sorted(contents, key=lambda c: c.escalation_id)
    return await conn.fetch(
        """
        INSERT INTO escalator.escalations (escalation_id, case_id, url, normalized_url,
            platform, route, harm_types, urgency, received_at, state, reason, linked_cases,
            dsa_category, reason_code, due_at)
        SELECT u.id, u.case_id, u.url, u.norm, u.platform, u.route,
               string_to_array(u.harm, ','), u.urgency, u.received_at,
               CASE WHEN u.route = 'platform' THEN 'queued' ELSE 'needs_manual' END,
               CASE WHEN u.route = 'platform' THEN NULL ELSE u.reason END,
               u.linked, u.dsa, u.code, u.due_at
        FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::int[],
                    $12::text[], $13::text[], $14::timestamptz[])
            AS u(id, case_id, url, norm, platform, route, harm, urgency, received_at, reason,
                 linked, dsa, code, due_at)
        ON CONFLICT (escalation_id) DO NOTHING
        RETURNING *
        """,
        [c.escalation_id for c in cs],
        [c.opener[0].case_id for c in cs],
        [c.opener[1].url for c in cs],
        [c.opener[1].normalized_url for c in cs],
        [c.opener[1].platform for c in cs],
        [c.opener[1].route for c in cs],
        [",".join(c.harm_types) for c in cs],
        [c.urgency for c in cs],
        [c.opener[0].received_at for c in cs],
        [
            HOTLINE_REASON
            if c.opener[1].route == "hotline"
            else c.opener[1].reason or MANUAL_REASONS.get(c.opener[1].route)
            for c in cs
        ],
        [len(c.links) for c in cs],
        [c.dsa_category for c in cs],
        [c.reason_code for c in cs],
        [c.due_at for c in cs],
    )


REPORTED_AGAIN = (
    "reported again after its notice was withdrawn (a re-triage had moved its last case "
    "away): a practitioner decides whether to notify the platform again"
)


async def _join_existing(conn: Conn, contents: list[Content]) -> list[Any]:
    """Add new cases to escalations that exist already: lock them (in id order), count the
    cases, and raise urgency and harm types of those still waiting to be sent.

    An escalation withdrawn after a re-triage moved its last case away is reopened by a
    new case: queued again if nothing had reached the platform (its notice was cancelled
    before it was sent), else handed to a person (never re-sent automatically); a
    hotline one waits for the hotline worker again. A withdrawal requested but not made
    yet is dropped (see :class:`helpline_escalator.retriage.Withdrawals`). Returns the
    reopened rows."""
    cs = sorted(contents, key=lambda c: c.escalation_id)
    current = {
        r["escalation_id"]: r
        for r in await conn.fetch(
            """SELECT escalation_id, state, harm_types, urgency, dsa_category, reason_code,
                      route, platform_reference
               FROM escalator.escalations WHERE escalation_id = ANY($1::uuid[])
               ORDER BY escalation_id FOR UPDATE""",
            [c.escalation_id for c in cs],
        )
    }
    for c in cs:
        row = current[c.escalation_id]
        if row["state"] not in (*WAITING, "withdrawn"):
            c.harm_types, c.urgency = list(row["harm_types"]), row["urgency"]
            c.dsa_category, c.reason_code = row["dsa_category"], row["reason_code"]
            continue
        more_severe = _lead_rank(c.harm_types) < _lead_rank(row["harm_types"])
        row_has_codes = bool(row["dsa_category"] or row["reason_code"])
        if row_has_codes and not (more_severe and (c.dsa_category or c.reason_code)):
            c.dsa_category, c.reason_code = row["dsa_category"], row["reason_code"]
        c.harm_types = list(most_severe_first(set(row["harm_types"]) | set(c.harm_types)))
        c.urgency = _more_urgent(row["urgency"], c.urgency)
    await conn.execute(
        """
        UPDATE escalator.escalations e
        SET linked_cases = CASE WHEN e.withdraw_requested_at IS NULL
                                THEN e.linked_cases + u.linked
                                -- a re-triage moved cases off it: count those linked now
                                ELSE greatest(1, (SELECT count(*)
                                                  FROM escalator.escalation_cases l
                                                  WHERE l.escalation_id = e.escalation_id
                                                    AND l.unlinked_at IS NULL)) END,
            updated_at = now(),
            harm_types = string_to_array(u.harm, ','), urgency = u.urgency,
            dsa_category = u.dsa, reason_code = u.code,
            due_at = LEAST(e.due_at, u.due_at)
        FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::timestamptz[])
            AS u(id, linked, harm, urgency, dsa, code, due_at)
        WHERE e.escalation_id = u.id
        """,
        [c.escalation_id for c in cs],
        [len(c.links) for c in cs],
        [",".join(c.harm_types) for c in cs],
        [c.urgency for c in cs],
        [c.dsa_category for c in cs],
        [c.reason_code for c in cs],
        [c.due_at for c in cs],
    )
    # A withdrawal still pending is dropped: the content has a case again.
    await conn.execute(
        """UPDATE escalator.escalations SET withdraw_requested_at = NULL, updated_at = now()
           WHERE escalation_id = ANY($1::uuid[]) AND state <> 'withdrawn'
             AND withdraw_requested_at IS NOT NULL""",
        [c.escalation_id for c in cs],
    )
    withdrawn = [eid for eid, r in current.items() if r["state"] == "withdrawn"]
    if not withdrawn:
        return []
    return list(
        await conn.fetch(
            """
            UPDATE escalator.escalations e
            SET state = CASE WHEN e.route = 'platform' AND e.platform_reference IS NULL
                             THEN 'queued' ELSE 'needs_manual' END,
                reason = CASE WHEN e.route = 'platform' AND e.platform_reference IS NULL
                              THEN NULL
                              WHEN e.route = 'hotline' AND e.platform_reference IS NULL
                              THEN $2
                              WHEN e.platform_reference IS NULL THEN $3
                              ELSE $4 END,
                withdraw_requested_at = NULL, claimed_at = NULL, next_action_at = now(),
                updated_at = now(),
                linked_cases = (SELECT count(*) FROM escalator.escalation_cases l
                                WHERE l.escalation_id = e.escalation_id
                                  AND l.unlinked_at IS NULL)
            WHERE e.escalation_id = ANY($1::uuid[])
            RETURNING e.*
            """,
            withdrawn,
            HOTLINE_REASON,
            MANUAL_REASONS["manual"],
            REPORTED_AGAIN,
        )
    )


@dataclass(frozen=True)
class Linked:
    """What linking a batch did: escalations opened (queued ones per platform) and the
    outcome events to queue in the same transaction."""

    opened: list[Any]
    outcomes: list[OutgoingMessage]

    @property
    def platforms(self) -> set[str]:
        return {r["platform"] for r in self.opened if r["state"] == "queued"}

    @property
    def hotline(self) -> bool:
        """New escalations on the hotline route wait to be reported to the hotline."""
        return any(r["route"] == "hotline" for r in self.opened)


async def link_cases(
    conn: Conn,
    cases: Sequence[CaseTriagedV1],
    traceparents: Mapping[uuid.UUID, str] | None = None,
) -> Linked:
    """Link every URL of `cases` to its content's escalation, opening those not known.

    New escalations on the hotline or manual route are `needs_manual` at once, announced
    to every case linked (a hotline one with the reason that the hotline gets it: the
    hotline worker reports it and it becomes `submitted`); cases joining an existing
    escalation hear its states so far.
    `traceparents` (by case id) is the trace each case's links and outcomes continue.
    """
    rows = [(case, u) for case in cases for u in case.urls]
    if not rows:
        return Linked([], [])
    by_key = {(c.case_id, u.url_id): (c, u) for c, u in rows}
    contents: dict[uuid.UUID, Content] = {}
    for link in await _insert_links(conn, rows, traceparents or {}):
        case, url = by_key[(link["case_id"], link["url_id"])]
        eid = link["escalation_id"]
        content = contents.setdefault(eid, Content(eid, (case, url)))
        if case.received_at < content.opener[0].received_at:
            content.opener = (case, url)
        content.add(case, url)
        content.links.append(link)
    if not contents:
        return Linked([], [])
    opened = await _insert_escalations(conn, list(contents.values()))
    new_ids = {r["escalation_id"] for r in opened}
    joined = [c for eid, c in contents.items() if eid not in new_ids]
    outcomes: list[OutgoingMessage] = []
    reopened: list[Any] = []
    if joined:
        reopened = await _join_existing(conn, joined)
        outcomes += await catch_up(conn, [link for c in joined for link in c.links])
    now = utcnow()
    outcomes += await announce(
        conn,
        [
            Reached(r["escalation_id"], "needs_manual", 0, now, reason=r["reason"])
            for r in opened
            if r["state"] == "needs_manual"
        ]
        + [
            Reached(
                r["escalation_id"],
                "needs_manual",
                r["attempts"],
                now,
                reference=r["platform_reference"],
                reason=r["reason"],
                occurrence=f"reopened-{now.isoformat()}",
            )
            for r in reopened
            if r["state"] == "needs_manual"
        ],
    )
    return Linked([*opened, *reopened], outcomes)
