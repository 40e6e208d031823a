"""Outcome events for `helpline.escalations.outcomes`: one per state per linked case.

An escalation stands for one content and may be linked to several cases. Each state it
reaches is recorded once (`escalator.escalation_states`, with what was announced) and
announced to every case linked to it, keyed by that case's id, so each case shows its
outcome and one case's outcomes stay in order. A case linked later is told the states
already reached, with the same facts, at once (see :mod:`helpline_escalator.links`).

Event id = uuid5(the case's URL id, state): each state is announced once per case, and a
re-announcement (outbox replay) carries the same id. Escalations made before shared
escalations have URL id = escalation id, so their event ids are unchanged. Two
exceptions keep ids distinct where a state can be told more than once: a state reached
again (`occurrence`, e.g. submitted by hand after it had been submitted and failed)
adds the occurrence, and a link made by a re-triage (revision > 1, the case's URL moved
to another escalation) adds the escalation id. `breached` is once per escalation.

Each event carries the escalation's route and due time (the earliest `decision_due_at`
of its cases), and what the state's announcer gave: a practitioner's `actor` and `note`,
the `followups` sent so far, whether an appeal `overturned` the decision.

Tracing: an event carries its case link's `traceparent` (stored when the case was
linked, while tracing was on) in its headers, so the outbox relays it in the case's trace
whether it was added while the case was processed or later by a platform worker.

Recipients: the cases currently linked, and those a re-triage moved off an escalation
when it was marked for withdrawal (they hear what becomes of the notice they left).

Race-free by locking: a state is recorded and announced after its escalation's row is
locked (the update that moves it), and a link to an existing escalation reads the states
while holding the same row lock, so every linked case hears each state exactly once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from helpline_shared import cloudevents
from helpline_shared.db import Conn
from helpline_shared.events import EscalationOutcomeV1, derive_id
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.topics import ESCALATION_OUTCOMES

SOURCE = "urn:helpline:escalator"


@dataclass(frozen=True)
class Reached:
    """A state an escalation reached, as announced to each of its cases."""

    escalation_id: uuid.UUID
    state: str
    attempts: int
    occurred_at: datetime
    decision: str | None = None
    reference: str | None = None
    reason: str | None = None
    route: str | None = None  # the escalation's, when None
    due_at: datetime | None = None  # the escalation's, when None
    followups: int | None = None
    actor: str | None = None
    note: str | None = None
    overturned: bool | None = None
    occurrence: str = ""  # '' the first time; else what reached the state again

    @classmethod
    def of(cls, row: Any) -> Reached:
        return cls(
            row["escalation_id"],
            row["state"],
            row["attempts"],
            row["occurred_at"],
            row["decision"],
            row["platform_reference"],
            row["reason"],
            row["route"],
            row["due_at"],
            row["followups"],
            row["actor"],
            row["note"],
            row["overturned"],
            row["occurrence"],
        )


def outcome_event_id(link: Any, reached: Reached) -> uuid.UUID:
    """uuid5(URL id, state) for a state's first announcement on a case's first link; the
    occurrence and, for a link made by a re-triage, the escalation id are added."""
    parts: list[object] = ["escalation.outcome", link["url_id"], reached.state]
    if reached.occurrence:
        parts.append(reached.occurrence)
    if (link.get("revision") or 1) > 1:
        parts.append(reached.escalation_id)
    return derive_id(*parts)


def outcome_message(escalation: Any, link: Any, reached: Reached) -> OutgoingMessage:
    """The event telling the case of `link` that `escalation` reached a state."""
    event = EscalationOutcomeV1.model_validate(
        {
            "event_id": outcome_event_id(link, reached),
            "case_id": link["case_id"],
            "escalation_id": reached.escalation_id,
            "platform": escalation["platform"],
            "url": link["url"],
            "state": reached.state,
            "decision": reached.decision,
            "platform_reference": reached.reference,
            "attempts": reached.attempts,
            "reason": reached.reason,
            "received_at": link["received_at"],
            "occurred_at": reached.occurred_at,
            "url_id": link["url_id"],
            "linked_at": link["linked_at"],
            "linked_cases": escalation["linked_cases"],
            "first_received_at": escalation["received_at"],
            "route": reached.route or escalation["route"],
            "due_at": reached.due_at or escalation["due_at"],
            "followups": reached.followups,
            "actor": reached.actor,
            "note": reached.note,
            "overturned": reached.overturned,
        }
    )
    message = cloudevents.event_message(
        ESCALATION_OUTCOMES.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_=f"helpline.escalation.{reached.state}.v1",
        source=SOURCE,
        time=event.occurred_at,
        subject=event.case_id,
    )
    if traceparent := link.get("traceparent"):
        message.headers["traceparent"] = traceparent
    return message


async def _escalations(conn: Conn, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.fetch(
        """SELECT escalation_id, platform, linked_cases, received_at, route, due_at
           FROM escalator.escalations WHERE escalation_id = ANY($1::uuid[])""",
        list(ids),
    )
    return {r["escalation_id"]: r for r in rows}


async def announce(conn: Conn, reached: Sequence[Reached]) -> list[OutgoingMessage]:
    """Record each state reached and build its event for every case linked to it.

    Call with the escalations' rows locked (after the update that moved them), in the
    transaction that queues the events. A state already recorded (with the same
    occurrence) is not announced again. Route and due time not given are the escalation's
    at this moment, recorded with the state so later cases hear the same.
    """
    if not reached:
        return []
    current = await _escalations(conn, sorted({r.escalation_id for r in reached}))
    reached = [
        replace(
            r,
            route=r.route or current[r.escalation_id]["route"],
            due_at=r.due_at or current[r.escalation_id]["due_at"],
        )
        if r.escalation_id in current
        else r
        for r in reached
    ]
    rows = await conn.fetch(
        """
        INSERT INTO escalator.escalation_states
            (escalation_id, state, attempts, decision, platform_reference, reason, occurred_at,
             route, due_at, followups, actor, note, overturned, occurrence)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[],
                             $6::text[], $7::timestamptz[], $8::text[], $9::timestamptz[],
                             $10::int[], $11::text[], $12::text[], $13::bool[], $14::text[])
        ON CONFLICT DO NOTHING
        RETURNING *
        """,
        [r.escalation_id for r in reached],
        [r.state for r in reached],
        [r.attempts for r in reached],
        [r.decision for r in reached],
        [r.reference for r in reached],
        [r.reason for r in reached],
        [r.occurred_at for r in reached],
        [r.route for r in reached],
        [r.due_at for r in reached],
        [r.followups for r in reached],
        [r.actor for r in reached],
        [r.note for r in reached],
        [r.overturned for r in reached],
        [r.occurrence for r in reached],
    )
    fresh = [Reached.of(r) for r in rows]
    ids = sorted({r.escalation_id for r in fresh})
    escalations = {i: current[i] for i in ids if i in current}
    links: dict[uuid.UUID, list[Any]] = {}
    for link in await conn.fetch(
        """SELECT l.* FROM escalator.escalation_cases l
           JOIN escalator.escalations e USING (escalation_id)
           WHERE l.escalation_id = ANY($1::uuid[])
             AND (l.unlinked_at IS NULL OR l.unlinked_at = e.withdraw_requested_at)
           ORDER BY l.linked_at, l.case_id""",
        ids,
    ):
        links.setdefault(link["escalation_id"], []).append(link)
    return [
        outcome_message(escalations[r.escalation_id], link, r)
        for r in fresh
        for link in links.get(r.escalation_id, [])
    ]


async def reached_before(conn: Conn, escalation_id: uuid.UUID, state: str) -> bool:
    """Whether `state` was already announced for the escalation (its next announcement
    needs an occurrence)."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM escalator.escalation_states
                              WHERE escalation_id = $1 AND state = $2)""",
            escalation_id,
            state,
        )
    )


async def catch_up(conn: Conn, links: Sequence[Any]) -> list[OutgoingMessage]:
    """The events of every state already reached by the escalations of new `links`, for
    those links' cases only, oldest state first. Call holding the escalations' row locks."""
    if not links:
        return []
    ids = sorted({link["escalation_id"] for link in links})
    states: dict[uuid.UUID, list[Reached]] = {}
    for row in await conn.fetch(
        """SELECT * FROM escalator.escalation_states WHERE escalation_id = ANY($1::uuid[])
           ORDER BY occurred_at, state, occurrence""",
        ids,
    ):
        states.setdefault(row["escalation_id"], []).append(Reached.of(row))
    if not states:
        return []
    escalations = await _escalations(conn, list(states))
    return [
        outcome_message(escalations[link["escalation_id"]], link, r)
        for link in links
        for r in states.get(link["escalation_id"], [])
    ]
