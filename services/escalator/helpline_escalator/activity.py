"""Activity events for `helpline.escalations.activity`: each call to a platform or the
hotline once it ends, and each practitioner action, applied or refused.

Promises: an activity event is queued on the outbox in the transaction that finishes its
attempt (or applies its command), so it is published if and only if that is stored; it
is keyed by escalation id, so one escalation's activity stays in order; its `event_id` is
the attempt's id (or the command's), so a redelivery is recognised. An attempt released
before its call went out (`not_sent`) was no call and has no event. Never carries
reporter data, nor the content: only times, kinds, HTTP status, result and the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from helpline_shared import cloudevents
from helpline_shared.db import Conn
from helpline_shared.events import EscalationActivityV1, utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.topics import ESCALATION_ACTIVITY

SOURCE = "urn:helpline:escalator"


def activity_message(
    *,
    event_id: uuid.UUID,
    escalation_id: uuid.UUID,
    platform: str,
    kind: str,
    started_at: datetime,
    finished_at: datetime | None = None,
    http_status: int | None = None,
    result: str | None = None,
    error: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    note: str | None = None,
    command_id: uuid.UUID | None = None,
) -> OutgoingMessage:
    """One activity event as an outbox message, keyed by escalation id. `event_id` is the
    attempt's id, or the command's for a practitioner's action."""
    event = EscalationActivityV1.model_validate(
        {
            "event_id": event_id,
            "escalation_id": escalation_id,
            "platform": platform,
            "kind": kind,
            "started_at": started_at,
            "finished_at": finished_at,
            "http_status": http_status,
            "result": result,
            "error": error,
            "actor": actor,
            "action": action,
            "note": note,
            "command_id": command_id,
        }
    )
    return cloudevents.event_message(
        ESCALATION_ACTIVITY.name,
        event,
        event_id=event.event_id,
        key=event.escalation_id,
        type_=f"helpline.escalation.activity.{kind}.v1",
        source=SOURCE,
        time=event.finished_at or event.started_at,
        subject=event.escalation_id,
    )


def practitioner_message(
    command: Any,
    platform: str,
    *,
    result: str,
    error: str | None = None,
    at: datetime | None = None,
) -> OutgoingMessage:
    """The activity event of a practitioner's command (a PractitionerCommandV1), applied
    (`ok`) or `refused` with the reason in `error`; `event_id` is the command's id."""
    now = at or utcnow()
    assert command.escalation_id is not None
    return activity_message(
        event_id=command.command_id,
        escalation_id=command.escalation_id,
        platform=platform,
        kind="practitioner",
        started_at=command.issued_at,
        finished_at=now,
        result=result,
        error=error,
        actor=command.actor,
        action=command.action,
        note=command.note,
        command_id=command.command_id,
    )


async def attempt_messages(conn: Conn, attempt_ids: Sequence[uuid.UUID]) -> list[OutgoingMessage]:
    """The activity events of the finished attempts among `attempt_ids`, read from
    `escalator.attempts`. Call in the transaction that finished them (after the update),
    and queue the result on the outbox there. Attempts still open, or released unsent,
    give none."""
    if not attempt_ids:
        return []
    rows = await conn.fetch(
        """SELECT a.*, e.platform FROM escalator.attempts a
           JOIN escalator.escalations e USING (escalation_id)
           WHERE a.attempt_id = ANY($1::uuid[]) AND a.finished_at IS NOT NULL
             AND a.result IS DISTINCT FROM 'not_sent'
           ORDER BY a.finished_at, a.attempt_id""",
        list(attempt_ids),
    )
    return [
        activity_message(
            event_id=r["attempt_id"],
            escalation_id=r["escalation_id"],
            platform=r["platform"],
            kind=r["kind"],
            started_at=r["started_at"],
            finished_at=r["finished_at"],
            http_status=r["http_status"],
            result=r["result"],
            error=r["error"],
        )
        for r in rows
    ]


async def start_attempt(conn: Conn, escalation_id: uuid.UUID, kind: str) -> uuid.UUID:
    """Record an attempt of `kind` (followup, appeal, withdrawal, hotline_report, ...)
    before its call is made; returns its id. Finish it with `finish_attempt`."""
    attempt_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO escalator.attempts (attempt_id, escalation_id, kind)
           VALUES ($1, $2, $3)""",
        attempt_id,
        escalation_id,
        kind,
    )
    return attempt_id


async def finish_attempt(
    conn: Conn,
    attempt_id: uuid.UUID,
    result: str,
    *,
    http_status: int | None = None,
    error: str | None = None,
) -> list[OutgoingMessage]:
    """End an attempt with its result and return its activity event, to queue on the
    outbox in the same transaction. An attempt already finished is left as it is (and
    gives its event again, with the same id)."""
    await conn.execute(
        """UPDATE escalator.attempts
           SET finished_at = now(), result = $2, http_status = $3, error = $4
           WHERE attempt_id = $1 AND finished_at IS NULL""",
        attempt_id,
        result,
        http_status,
        error,
    )
    return await attempt_messages(conn, [attempt_id])
