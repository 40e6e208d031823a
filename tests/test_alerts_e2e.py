"""Alerts through the running notify service on the real broker and PostgreSQL: a critical
case published on helpline.cases.triaged reaches the webhook receiver (signature verified)
and the on-duty inboxes (an aiosmtpd server) within seconds, once however often the event
is redelivered; a breached deadline on helpline.escalations.outcomes does too."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from pydantic import BaseModel

from helpline_cli.infra import free_port
from helpline_notify.alerts import alert_id
from helpline_notify.app import create_app
from helpline_shared.events import CaseOpenedV1, CaseTriagedV1, case_reference
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, CASES_TRIAGED, ESCALATION_OUTCOMES
from tests.conftest import fresh_database
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_alerts import ON_DUTY, SECRET, Inbox, Receiver, breached, receiving, triaged


@dataclass
class Notify:
    receiver: Receiver
    inbox: Inbox
    producer: AIOKafkaProducer

    async def publish(self, *events: BaseModel) -> None:
        for e in events:
            topic = (
                CASES_TRIAGED
                if isinstance(e, CaseTriagedV1)
                else CASES_OPENED
                if isinstance(e, CaseOpenedV1)
                else ESCALATION_OUTCOMES
            )
            key = str(e.case_id).encode()  # type: ignore[attr-defined]
            await self.producer.send_and_wait(topic.name, e.model_dump_json().encode(), key=key)


@pytest.fixture(scope="module")
def smtp_inbox() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def notify(
    infra: Infra, tmp_dir: Path, smtp_inbox: tuple[Inbox, int]
) -> AsyncIterator[Notify]:
    inbox, smtp_port = smtp_inbox
    with dedicated_broker(infra, tmp_dir) as servers:
        url = await fresh_database(infra, "helpline_alerts_e2e")
        async with receiving() as receiver:
            settings = Settings(
                kafka_bootstrap_servers=servers,
                database_url=url,
                log_json=True,
                alert_webhook_url=receiver.url,
                alert_webhook_secret=SECRET,
                alert_emails=ON_DUTY,
                smtp_host="127.0.0.1",
                smtp_port=smtp_port,
                mail_per_recipient_limit="1000/hour",
                delivery_retry_base_s=0.2,
                delivery_retry_max_s=1.0,
            )
            await create_topics(settings)
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                async with served(create_app(settings)):
                    yield Notify(receiver, inbox, producer)
            finally:
                await producer.stop()


async def until(check: Callable[[], bool], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def mails_about(inbox: Inbox, case_id: uuid.UUID) -> list[str]:
    return [str(m["To"]) for m in inbox.messages if case_reference(case_id) in str(m["Subject"])]


async def test_a_critical_case_alerts_the_people_on_duty_within_seconds_once(
    notify: Notify,
) -> None:
    event = triaged(urgency="critical", harms=("threats_risk_to_life",))
    wanted = str(alert_id("case.critical", event.case_id))
    started = time.monotonic()
    await notify.publish(event)
    await until(
        lambda: (
            any(t[0] == wanted for t in notify.receiver.tries)
            and len(mails_about(notify.inbox, event.case_id)) == len(ON_DUTY)
        ),
        "the critical alert",
        timeout_s=30,
    )
    assert time.monotonic() - started < 10  # within seconds (the first poll can be slow)
    await notify.publish(event, event)  # redelivered
    await asyncio.sleep(3)
    tries = [t for t in notify.receiver.tries if t[0] == wanted]
    assert len(tries) == 1
    assert tries[0][2], "the webhook's signature did not verify"
    assert sorted(mails_about(notify.inbox, event.case_id)) == sorted(ON_DUTY)


async def test_a_breached_deadline_alerts_the_people_on_duty(notify: Notify) -> None:
    case = triaged(urgency="high", harms=("bullying_harassment",))
    escalation_id = uuid.uuid4()
    await notify.publish(case, breached(case.case_id, escalation_id))
    wanted = str(alert_id("deadline.breached", escalation_id))
    await until(
        lambda: (
            any(a["id"] == wanted for a in notify.receiver.delivered())
            and len(mails_about(notify.inbox, case.case_id)) == len(ON_DUTY)
        ),
        "the breach alert",
        timeout_s=30,
    )
    alert = next(a for a in notify.receiver.delivered() if a["id"] == wanted)
    assert (alert["type"], alert["state"], alert["platform"]) == (
        "deadline.breached",
        "breached",
        "tiktok",
    )
    assert (alert["urgency"], alert["harm_types"]) == ("high", ["bullying_harassment"])
    # A high, non-critical case raised no critical alert of its own.
    critical = str(alert_id("case.critical", case.case_id))
    assert not any(t[0] == critical for t in notify.receiver.tries)


async def test_a_simulated_case_pages_no_one(notify: Notify) -> None:
    """Reports generated by `helpline simulate` are not real: no alert for them."""
    case = triaged(urgency="critical", harms=("child_sexual_imagery",))
    opened = CaseOpenedV1(
        event_id=uuid.uuid4(),
        case_id=case.case_id,
        source="simulated:bench",
        report_id=f"sim-{uuid.uuid4()}",
        received_at=case.received_at,
        description="generated",
        urls=[u.url for u in case.urls],
        simulated=True,
    )
    escalation_id = uuid.uuid4()
    await notify.publish(opened)
    await asyncio.sleep(1.5)  # opened is consumed before its triage, as in the pipeline
    await notify.publish(case, breached(case.case_id, escalation_id))
    # A real critical case published after them is alerted: the simulated one came first.
    real = triaged()
    await notify.publish(real)
    wanted = str(alert_id("case.critical", real.case_id))
    await until(
        lambda: (
            any(t[0] == wanted for t in notify.receiver.tries)
            and len(mails_about(notify.inbox, real.case_id)) == len(ON_DUTY)
        ),
        "the real case's alert",
        timeout_s=30,
    )
    await asyncio.sleep(1.5)
    simulated = {
        str(alert_id("case.critical", case.case_id)),
        str(alert_id("deadline.breached", escalation_id)),
    }
    assert not [t for t in notify.receiver.tries if t[0] in simulated]
    assert mails_about(notify.inbox, case.case_id) == []
