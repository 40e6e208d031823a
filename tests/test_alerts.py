"""Alerts to the people on duty on real PostgreSQL: a critical case and a breached deadline
queue one signed webhook delivery (POSTed to a receiver on loopback that checks the
signature) and one email per on-duty address (sent by notify's mail sender to an aiosmtpd
server), once each however often the events are redelivered; a failing receiver is retried
with backoff, and a refusing one is given up with the reason."""

from __future__ import annotations

import asyncio
import contextlib
import email
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from helpline_cli.infra import free_port
from helpline_notify.alerts import alert_id, on_events
from helpline_notify.mail import Sender
from helpline_notify.webhooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign,
    verify_signature,
)
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    TriagedUrl,
    case_reference,
)
from helpline_shared.settings import Settings
from tests.conftest import opened_database
from tests.infra import Infra

SECRET = "alert-test-secret"
ON_DUTY = ["duty.one@helpline.example", "duty.two@helpline.example"]


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_alerts") as database:
        yield database


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers with `plan` in turn (then 200) and keeps
    what it was sent, with whether the signature verified."""

    plan: list[int] = field(default_factory=list)
    tries: list[tuple[str, bytes, bool]] = field(default_factory=list)
    url: str = ""
    retry_after: str | None = None  # sent with every refusal when set
    times: list[float] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        signed = verify_signature(SECRET, request.headers.get(SIGNATURE_HEADER, ""), body)
        self.tries.append((request.headers.get(EVENT_ID_HEADER, ""), body, signed))
        self.times.append(time.monotonic())
        status = self.plan.pop(0) if self.plan else 200
        if not signed:
            status = 401
        self.answers.append(status)
        headers = {"Retry-After": self.retry_after} if self.retry_after and status >= 400 else {}
        return web.Response(
            status=status, text="refused" if status >= 400 else "ok", headers=headers
        )

    def delivered(self) -> list[dict[str, Any]]:
        """The distinct alerts received with a valid signature and answered 2xx (deduped by
        event id, as a receiver does for the at-least-once case)."""
        seen: dict[str, dict[str, Any]] = {}
        for (event_id, body, signed), status in zip(self.tries, self.answers, strict=True):
            if signed and status < 300:
                seen.setdefault(event_id, json.loads(body))
        return list(seen.values())


@contextlib.asynccontextmanager
async def receiving(plan: Sequence[int] = ()) -> AsyncIterator[Receiver]:
    receiver = Receiver(plan=list(plan))
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def settings_for(url: str, smtp_port: int = 1, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "alert_webhook_url": url,
        "alert_webhook_secret": SECRET,
        "alert_emails": ON_DUTY,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp_port,
        "delivery_retry_base_s": 0.2,
        "delivery_retry_max_s": 1.0,
        "delivery_max_attempts": 5,
        "mail_per_recipient_limit": "1000/hour",
    }
    return Settings(**(values | overrides))


def triaged(
    *, urgency: str = "critical", harms: Sequence[str] = ("threats_risk_to_life",)
) -> CaseTriagedV1:
    now = datetime.now(UTC)
    url_id = uuid.uuid4()
    return CaseTriagedV1.model_validate(
        {
            "event_id": uuid.uuid4(),
            "case_id": uuid.uuid4(),
            "received_at": now,
            "triaged_at": now,
            "harm_types": list(harms),
            "urgency": urgency,
            "route": "platform",
            "rules_fired": [],
            "urls": [
                TriagedUrl(
                    url_id=url_id,
                    url="https://www.tiktok.com/@someone/video/1",
                    normalized_url="https://www.tiktok.com/@someone/video/1",
                    platform="tiktok",
                    route="platform",
                )
            ],
        }
    )


def breached(case_id: uuid.UUID, escalation_id: uuid.UUID) -> EscalationOutcomeV1:
    now = datetime.now(UTC)
    return EscalationOutcomeV1(
        event_id=uuid.uuid4(),
        case_id=case_id,
        escalation_id=escalation_id,
        platform="tiktok",
        url="https://www.tiktok.com/@someone/video/1",
        state="breached",
        attempts=1,
        received_at=now - timedelta(days=2),
        occurred_at=now,
        due_at=now - timedelta(minutes=1),
    )


async def consume(db: Database, events: Sequence[object], settings: Settings) -> int:
    """As notify's consumer does: the alerts in the transaction of the batch."""
    async with db.pool.acquire() as conn, conn.transaction():
        return await on_events(conn, events, settings)


async def until(check: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(*loops: WebhookSender | Sender) -> AsyncIterator[None]:
    for loop in loops:
        loop.start()
    try:
        yield
    finally:
        for loop in loops:
            await loop.stop(5.0)


async def test_a_critical_case_is_alerted_at_once_signed_and_once(
    db: Database, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    event = triaged(urgency="high", harms=("child_sexual_imagery",))
    async with receiving() as receiver:
        settings = settings_for(receiver.url, smtp_port)
        sender, mailer = WebhookSender(db, settings, idle_s=0.1), Sender(db, settings)
        async with running(sender, mailer):
            started = time.monotonic()
            assert await consume(db, [event], settings) == 1
            sender.wake()
            mailer.wake()
            await until(lambda: len(receiver.tries) >= 1 and len(inbox.messages) >= 2)
            assert time.monotonic() - started < 5
            # Redelivered (the same event twice, and again in a later batch): nothing new.
            assert await consume(db, [event, event], settings) == 0
            sender.wake()
            mailer.wake()
            await asyncio.sleep(1.5)
    assert len(receiver.tries) == 1
    event_id, body, signed = receiver.tries[0]
    assert signed
    alert = json.loads(body)
    assert event_id == alert["id"] == str(alert_id("case.critical", event.case_id))
    assert datetime.fromisoformat(alert.pop("occurred_at")) == event.triaged_at
    assert alert == {
        "type": "case.critical",
        "id": event_id,
        "case_id": str(event.case_id),
        "reference": case_reference(event.case_id),
        "urgency": "high",
        "harm_types": ["child_sexual_imagery"],
        "platform": "tiktok",
        "state": "triaged",
        "escalation_id": None,
        "due_at": None,
    }
    mine = [m for m in inbox.messages if case_reference(event.case_id) in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in mine) == sorted(ON_DUTY)
    text = mine[0].get_payload(decode=True)
    assert isinstance(text, bytes)
    assert case_reference(event.case_id) in text.decode()
    assert "tiktok.com" not in text.decode()  # no URL, no reporter data in an alert


async def test_a_case_that_is_not_critical_raises_no_alert(db: Database) -> None:
    settings = settings_for("http://127.0.0.1:1/hook")
    event = triaged(urgency="high", harms=("bullying_harassment",))
    assert await consume(db, [event], settings) == 0
    count = await db.pool.fetchval(
        "SELECT count(*) FROM notify.webhook_alerts WHERE case_id = $1", event.case_id
    )
    assert count == 0


async def test_a_receiver_failing_twice_gets_the_alert_on_the_third_try(db: Database) -> None:
    event = triaged()
    async with receiving(plan=[503, 500]) as receiver:
        settings = settings_for(receiver.url, alert_emails=[])
        sender = WebhookSender(db, settings, idle_s=0.05)
        async with running(sender):
            await consume(db, [event], settings)
            sender.wake()
            await until(lambda: len(receiver.delivered()) == 1 and len(receiver.tries) == 3)
            await asyncio.sleep(1.0)
    assert len(receiver.tries) == 3  # never a fourth
    assert {t[0] for t in receiver.tries} == {str(alert_id("case.critical", event.case_id))}
    row = await db.pool.fetchrow(
        "SELECT status, attempts, last_status FROM notify.webhook_alerts WHERE case_id = $1",
        event.case_id,
    )
    assert row is not None
    assert (row["status"], row["attempts"], row["last_status"]) == ("delivered", 3, 200)


async def test_a_receiver_asking_to_wait_is_tried_again_no_sooner(db: Database) -> None:
    event = triaged()
    async with receiving(plan=[429]) as receiver:
        receiver.retry_after = "2"  # longer than the backoff of 0.2 s
        settings = settings_for(receiver.url, alert_emails=[], delivery_retry_max_s=5.0)
        sender = WebhookSender(db, settings, idle_s=0.05)
        async with running(sender):
            await consume(db, [event], settings)
            sender.wake()
            await until(lambda: len(receiver.delivered()) == 1)
    assert len(receiver.tries) == 2
    assert receiver.times[1] - receiver.times[0] >= 1.9


@pytest.mark.parametrize("refusal", [422, 307])
async def test_a_refusing_receiver_is_given_up_at_once_with_the_reason(
    db: Database, refusal: int
) -> None:
    """A 4xx refuses the alert; a redirect is not followed with a signed alert."""
    event = triaged()
    async with receiving(plan=[refusal]) as receiver:
        settings = settings_for(receiver.url, alert_emails=[])
        sender = WebhookSender(db, settings, idle_s=0.05)
        async with running(sender):
            await consume(db, [event], settings)
            sender.wake()
            await until(lambda: len(receiver.tries) == 1)
            await asyncio.sleep(0.8)
    assert len(receiver.tries) == 1
    row = await db.pool.fetchrow(
        "SELECT status, attempts, last_error FROM notify.webhook_alerts WHERE case_id = $1",
        event.case_id,
    )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("given_up", 1)
    assert f"HTTP {refusal}" in row["last_error"]


async def test_a_receiver_that_never_answers_2xx_is_given_up_after_the_last_try(
    db: Database,
) -> None:
    event = triaged()
    async with receiving(plan=[503] * 10) as receiver:
        settings = settings_for(receiver.url, alert_emails=[], delivery_max_attempts=3)
        sender = WebhookSender(db, settings, idle_s=0.05)
        async with running(sender):
            await consume(db, [event], settings)
            sender.wake()
            await until(lambda: len(receiver.tries) == 3)
            await asyncio.sleep(1.5)
    assert len(receiver.tries) == 3
    row = await db.pool.fetchrow(
        "SELECT status, last_error FROM notify.webhook_alerts WHERE case_id = $1", event.case_id
    )
    assert row is not None
    assert row["status"] == "given_up"
    assert "after 3 tries" in row["last_error"]


async def test_a_breached_deadline_is_alerted_once_per_escalation(
    db: Database, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    first, second = triaged(urgency="normal", harms=("impersonation",)), triaged()
    escalation_id = uuid.uuid4()
    async with receiving() as receiver:
        settings = settings_for(receiver.url, smtp_port)
        sender, mailer = WebhookSender(db, settings, idle_s=0.1), Sender(db, settings)
        async with running(sender, mailer):
            await consume(db, [first, second], settings)
            # One content shared by two cases breaches: one event per linked case.
            raised = await consume(
                db,
                [
                    breached(first.case_id, escalation_id),
                    breached(second.case_id, escalation_id),
                ],
                settings,
            )
            assert raised == 1
            sender.wake()
            mailer.wake()
            await until(
                lambda: (
                    any(a["type"] == "deadline.breached" for a in receiver.delivered())
                    and sum("Deadline passed" in str(m["Subject"]) for m in inbox.messages) >= 2
                )
            )
            await asyncio.sleep(1.0)
    breaches = [a for a in receiver.delivered() if a["type"] == "deadline.breached"]
    assert len(breaches) == 1
    alert = breaches[0]
    assert alert["id"] == str(alert_id("deadline.breached", escalation_id))
    assert alert["case_id"] == str(first.case_id)
    assert alert["reference"] == case_reference(first.case_id)
    assert (alert["urgency"], alert["harm_types"]) == ("normal", ["impersonation"])
    assert (alert["platform"], alert["state"]) == ("tiktok", "breached")
    assert alert["escalation_id"] == str(escalation_id)
    assert datetime.fromisoformat(alert["due_at"]) < datetime.fromisoformat(alert["occurred_at"])
    mails = [m for m in inbox.messages if "Deadline passed" in str(m["Subject"])]
    assert sorted(str(m["To"]) for m in mails) == sorted(ON_DUTY)


async def test_a_breach_in_the_batch_of_its_cases_triage_names_the_triage(db: Database) -> None:
    """A batch spans topics: the outcome can come before the triage of its case."""
    settings = settings_for("http://127.0.0.1:1/hook")
    case = triaged(urgency="high", harms=("hate",))
    escalation_id = uuid.uuid4()
    assert await consume(db, [breached(case.case_id, escalation_id), case], settings) == 1
    body = await db.pool.fetchval(
        "SELECT body FROM notify.webhook_alerts WHERE alert_id = $1",
        alert_id("deadline.breached", escalation_id),
    )
    alert = json.loads(body)
    assert (alert["urgency"], alert["harm_types"]) == ("high", ["hate"])


def test_a_signature_verifies_only_for_its_body_secret_and_time() -> None:
    body = b'{"id":"x"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body + b" ")
    assert not verify_signature("another secret", header, body)
    assert not verify_signature(SECRET, sign(SECRET, body, now - 301), body)
    assert verify_signature(SECRET, sign(SECRET, body, now - 301), body, tolerance_s=600)
    assert not verify_signature(SECRET, "v1=" + header.partition("v1=")[2], body)
    assert not verify_signature(SECRET, "", body)
    rotated = f"{sign('old secret', body, now)},v1={header.partition('v1=')[2]}"
    assert verify_signature(SECRET, rotated, body)
