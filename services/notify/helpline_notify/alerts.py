"""Alerts to the people on duty: a critical case and a breached deadline, at once.

What raises an alert:
- `case.critical`: a `helpline.cases.triaged` decision with urgency `critical`, or naming
  one of `CRITICAL_HARMS` (risk to life, sexual imagery of a child, self-harm). Once per
  case: a re-triage or a redelivery adds nothing.
- `deadline.breached`: a `helpline.escalations.outcomes` event in state `breached`. Once
  per escalation: a content shared by several cases is one alert (naming the case whose
  event came first).

Each alert is an email to every address in `alert_emails` (the mail outbox, key
`alert:<kind>:<case or escalation id>:<address>`) and one row in the webhook outbox
(`webhooks.py`), both written in the consumer's transaction by `on_events`: an alert exists
exactly when the event that raised it was consumed, and a redelivered event queues nothing
new (both outboxes are keyed). The webhook's `id` is uuid5 of the alert's type and subject,
stable across redelivery, so a receiver dedupes an at-least-once repeat by it.

No reporter data goes into an alert: the case's reference and id, urgency, harm types,
platform and state only (never the description or the URLs).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from helpline_notify.mail import queue_mail
from helpline_notify.webhooks import queue_webhook
from helpline_shared.db import Conn
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    case_reference,
    derive_id,
)
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings

CRITICAL_HARMS = frozenset({"threats_risk_to_life", "child_sexual_imagery", "self_harm"})
CRITICAL = "case.critical"
BREACHED = "deadline.breached"

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=False,  # plain-text parts only  # noqa: S701
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)
_log = get_logger("helpline.notify.alerts")


def is_critical(event: CaseTriagedV1) -> bool:
    return event.urgency == "critical" or bool(CRITICAL_HARMS.intersection(event.harm_types))


def alert_id(type_: str, subject: uuid.UUID) -> uuid.UUID:
    """The stable id of the one alert of `type_` about `subject` (a case or escalation)."""
    return derive_id("alert", type_, subject)


def webhook_body(alert: dict[str, Any]) -> str:
    """The exact JSON POSTed (and signed): compact, keys sorted."""
    return json.dumps(alert, sort_keys=True, separators=(",", ":"))


async def on_events(conn: Conn, events: Iterable[object], settings: Settings) -> int:
    """Queue the alerts these consumed events raise, in `conn`'s transaction; returns how
    many alerts were new. Events of other kinds are ignored. Idempotent (see module doc)."""
    batch = list(events)
    raised = 0
    # Triage first: a batch spans topics, so its breach may come before its case's triage.
    for event in batch:
        if isinstance(event, CaseTriagedV1):
            await _remember_triage(conn, event)
            if is_critical(event):
                raised += await _critical(conn, event, settings)
    for event in batch:
        if isinstance(event, EscalationOutcomeV1) and event.state == "breached":
            raised += await _breached(conn, event, settings)
    return raised


async def _remember_triage(conn: Conn, event: CaseTriagedV1) -> None:
    await conn.execute(
        """INSERT INTO notify.alert_cases (case_id, urgency, harm_types, revision)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (case_id) DO UPDATE SET urgency = EXCLUDED.urgency,
               harm_types = EXCLUDED.harm_types, revision = EXCLUDED.revision,
               updated_at = now()
           WHERE notify.alert_cases.revision <= EXCLUDED.revision""",
        event.case_id,
        event.urgency,
        list(event.harm_types),
        event.revision,
    )


async def _critical(conn: Conn, event: CaseTriagedV1, settings: Settings) -> int:
    platforms = list(dict.fromkeys(u.platform for u in event.urls))
    alert = _alert(
        CRITICAL,
        event.case_id,
        event.case_id,
        event.triaged_at,
        urgency=event.urgency,
        harm_types=list(event.harm_types),
        platform=platforms[0] if platforms else None,
        state="triaged",
    )
    text = _templates.get_template("alert_critical.txt").render(
        reference=alert["reference"],
        case_id=str(event.case_id),
        urgency=event.urgency,
        harm_types=alert["harm_types"],
        platforms=platforms,
        occurred_at=alert["occurred_at"],
    )
    subject = f"Critical case {alert['reference']}: {', '.join(alert['harm_types']) or 'urgent'}"
    return await _queue(
        conn,
        alert,
        kind="critical",
        subject_id=event.case_id,
        subject=subject,
        text=text,
        settings=settings,
    )


async def _breached(conn: Conn, event: EscalationOutcomeV1, settings: Settings) -> int:
    known = await conn.fetchrow(
        "SELECT urgency, harm_types FROM notify.alert_cases WHERE case_id = $1", event.case_id
    )
    alert = _alert(
        BREACHED,
        event.escalation_id,
        event.case_id,
        event.occurred_at,
        urgency=known["urgency"] if known else None,
        harm_types=list(known["harm_types"]) if known else [],
        platform=event.platform,
        state=event.state,
    )
    alert["escalation_id"] = str(event.escalation_id)
    alert["due_at"] = event.due_at.isoformat() if event.due_at else None
    text = _templates.get_template("alert_breached.txt").render(
        reference=alert["reference"],
        case_id=str(event.case_id),
        escalation_id=alert["escalation_id"],
        platform=event.platform,
        urgency=alert["urgency"],
        harm_types=alert["harm_types"],
        due_at=alert["due_at"],
        occurred_at=alert["occurred_at"],
    )
    subject = f"Deadline passed: {alert['reference']} on {event.platform}"
    return await _queue(
        conn,
        alert,
        kind="breached",
        subject_id=event.escalation_id,
        subject=subject,
        text=text,
        settings=settings,
    )


def _alert(
    type_: str,
    subject: uuid.UUID,
    case_id: uuid.UUID,
    occurred_at: datetime,
    *,
    urgency: str | None,
    harm_types: list[str],
    platform: str | None,
    state: str,
) -> dict[str, Any]:
    return {
        "type": type_,
        "id": str(alert_id(type_, subject)),
        "occurred_at": occurred_at.isoformat(),
        "case_id": str(case_id),
        "reference": case_reference(case_id),
        "urgency": urgency,
        "harm_types": harm_types,
        "platform": platform,
        "state": state,
    }


async def _queue(
    conn: Conn,
    alert: dict[str, Any],
    *,
    kind: str,
    subject_id: uuid.UUID,
    subject: str,
    text: str,
    settings: Settings,
) -> int:
    case_id = uuid.UUID(alert["case_id"])
    new = await queue_webhook(
        conn,
        alert_id=uuid.UUID(alert["id"]),
        type_=alert["type"],
        case_id=case_id,
        body=webhook_body(alert),
    )
    for address in settings.alert_emails:
        await queue_mail(
            conn,
            key=f"alert:{kind}:{subject_id}:{address}",
            to=address,
            subject=subject,
            text=text,
            html=None,
            kind="alert",
            case_id=case_id,
        )
    if new:
        _log.info(
            "alert raised", alert_type=alert["type"], alert_id=alert["id"], case_id=str(case_id)
        )
    return int(new)
