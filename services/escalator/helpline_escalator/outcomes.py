"""Outcome events for `helpline.escalations.outcomes`, built from an escalation row.

Event id = uuid5(escalation id, state): each state is announced once per escalation, and a
re-announcement (outbox replay) carries the same id.
"""

from __future__ import annotations

from typing import Any

from helpline_shared import cloudevents
from helpline_shared.events import EscalationOutcomeV1, derive_id, utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.topics import ESCALATION_OUTCOMES

SOURCE = "urn:helpline:escalator"


def outcome_message(
    row: Any,
    *,
    state: str,
    attempts: int,
    decision: str | None = None,
    reference: str | None = None,
    reason: str | None = None,
) -> OutgoingMessage:
    event = EscalationOutcomeV1.model_validate(
        {
            "event_id": derive_id("escalation.outcome", row["escalation_id"], state),
            "case_id": row["case_id"],
            "escalation_id": row["escalation_id"],
            "platform": row["platform"],
            "url": row["url"],
            "state": state,
            "decision": decision,
            "platform_reference": reference,
            "attempts": attempts,
            "reason": reason,
            "received_at": row["received_at"],
            "occurred_at": utcnow(),
        }
    )
    return cloudevents.event_message(
        ESCALATION_OUTCOMES.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_=f"helpline.escalation.{state}.v1",
        source=SOURCE,
        time=event.occurred_at,
        subject=event.case_id,
    )
