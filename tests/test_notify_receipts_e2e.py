"""The notify service as a process of the stack, on the real broker and database, sending
to an SMTP server run by the test (aiosmtpd): each case's reporter gets one receipt and one
outcome email, whatever is redelivered and in whichever order the topics arrive; the same
holds across a SIGKILL of notify between the SMTP server's acceptance and the recording of
`sent_at` (the email is sent again after its lease with the same Message-ID, and recorded
once); a source that opted out gets none, nor does a simulated one; an erased reporter gets
nothing more and their address is left nowhere in notify's tables."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationOutcomeV1,
    Reporter,
    ReporterDetailsV1,
    TriagedUrl,
    case_reference,
)
from helpline_shared.settings import Settings
from helpline_shared.topics import CASE_REPORTERS, CASES_OPENED, CASES_TRIAGED, ESCALATION_OUTCOMES
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import wait_until

pytestmark = pytest.mark.e2e

OPTED_OUT = "partner-portal"
SMTP_TIMEOUT_S = 1.0  # the sender's lease is 2 x this + 5 s: a killed send is retried soon
TOPIC_OF: dict[type[Any], str] = {
    CaseOpenedV1: CASES_OPENED.name,
    ReporterDetailsV1: CASE_REPORTERS.name,
    CaseTriagedV1: CASES_TRIAGED.name,
    EscalationOutcomeV1: ESCALATION_OUTCOMES.name,
}


@dataclass
class Caught:
    rcpt: list[str]
    message: EmailMessage


@dataclass
class Catcher:
    """What an SMTP server accepted; `kill_for` names recipients whose first email makes it
    SIGKILL `victim()` before answering (the sender then never records the send)."""

    messages: list[Caught] = field(default_factory=list)
    kill_for: set[str] = field(default_factory=set)
    victim: Callable[[], int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        rcpt = [str(r) for r in envelope.rcpt_tos]
        with self.lock:
            self.messages.append(Caught(rcpt, message))
            doomed = [r for r in rcpt if r in self.kill_for]
            self.kill_for.difference_update(doomed)
        if doomed and self.victim is not None:
            os.kill(self.victim(), signal.SIGKILL)
            await asyncio.sleep(0.5)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [c.message for c in self.messages if address in c.rcpt]


@dataclass
class Notify:
    stack: Stack
    catcher: Catcher
    producer: AIOKafkaProducer
    database_url: str

    async def publish(self, events: Sequence[Any]) -> None:
        for e in events:
            await self.producer.send_and_wait(
                TOPIC_OF[type(e)], e.model_dump_json().encode(), key=str(e.case_id).encode()
            )

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    async def applied(self, case_id: uuid.UUID, timeout_s: float = 60) -> None:
        """Wait until every event published for `case_id` so far was applied: a marker
        event on each topic, keyed by the case (so after the others in its partition),
        is in notify's inbox."""
        now = datetime.now(UTC)
        markers: list[Any] = [
            opened(case_id, "marker", now),
            ReporterDetailsV1(
                event_id=uuid.uuid4(), case_id=case_id, reporter=None, occurred_at=now
            ),
            triaged(case_id, [], now, revision=1),  # not above the case's: replaces nothing
            outcome(case_id, uuid.uuid4(), "https://marker.example/x", "marker", "submitted", now),
        ]
        # A marker must change nothing: the reporter one is published only where the case
        # was erased anyway; elsewhere three topics' markers are enough for what is asserted.
        erased = await self.fetch(
            "SELECT 1 FROM notify.cases WHERE case_id = $1 AND erased_at IS NOT NULL", case_id
        )
        if not erased:
            markers.pop(1)
        # The outcome marker is a URL the case does not have: kept apart, moves nothing.
        await self.publish(markers)
        ids = [m.event_id for m in markers]

        async def seen() -> tuple[bool, Any]:
            rows = await self.fetch(
                "SELECT event_id FROM notify.inbox WHERE event_id = ANY($1::uuid[])", ids
            )
            return len(rows) == len(ids), len(rows)

        await wait_until(seen, timeout_s, f"notify applied the events of {case_id}")

    async def mails(self, case_id: uuid.UUID) -> list[asyncpg.Record]:
        return await self.fetch(
            "SELECT key, kind, recipient, sent_at, gave_up_at, attempts, last_error"
            " FROM notify.mail WHERE case_id = $1 AND kind IN ('receipt', 'outcome')"
            " ORDER BY seq",
            case_id,
        )


def opened(case_id: uuid.UUID, source: str, at: datetime, n_urls: int = 2) -> CaseOpenedV1:
    return CaseOpenedV1(
        event_id=uuid.uuid4(),
        case_id=case_id,
        source=source,
        report_id=f"r-{case_id.hex[:12]}",
        received_at=at,
        description="Pupils post abusive videos about a teacher.",
        urls=[f"https://www.tiktok.com/@a/video/{n}" for n in range(n_urls)],
    )


def reporter(case_id: uuid.UUID, email: str, at: datetime) -> ReporterDetailsV1:
    return ReporterDetailsV1(
        event_id=uuid.uuid4(),
        case_id=case_id,
        reporter=Reporter(name="A. Teacher", email=email, role="safeguarding lead"),
        occurred_at=at,
    )


def triaged(
    case_id: uuid.UUID, url_ids: Sequence[uuid.UUID], at: datetime, revision: int = 1
) -> CaseTriagedV1:
    return CaseTriagedV1(
        event_id=uuid.uuid4(),
        case_id=case_id,
        received_at=at,
        triaged_at=at,
        harm_types=["bullying_harassment"],
        urgency="normal",
        route="platform",
        rules_fired=["bullying"],
        revision=revision,
        urls=[
            TriagedUrl(
                url_id=u,
                url=f"https://www.tiktok.com/@a/video/{n}",
                normalized_url=f"https://www.tiktok.com/@a/video/{n}",
                platform="tiktok",
                route="platform",
            )
            for n, u in enumerate(url_ids)
        ],
    )


def outcome(
    case_id: uuid.UUID,
    url_id: uuid.UUID,
    url: str,
    platform: str,
    state: str,
    at: datetime,
    decision: str | None = None,
    reason: str | None = None,
) -> EscalationOutcomeV1:
    return EscalationOutcomeV1.model_validate(
        {
            "event_id": uuid.uuid4(),
            "case_id": case_id,
            "escalation_id": uuid.uuid5(url_id, "escalation"),
            "url_id": url_id,
            "platform": platform,
            "url": url,
            "state": state,
            "decision": decision,
            "reason": reason,
            "attempts": 1,
            "received_at": at,
            "occurred_at": at,
        }
    )


def story(
    case_id: uuid.UUID, email: str, source: str = "school-form"
) -> tuple[list[Any], list[Any]]:
    """A case's events up to a needs_manual URL (no outcome due), and those that end it."""
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    url1, url2 = "https://www.tiktok.com/@a/video/0", "https://www.tiktok.com/@a/video/1"
    before = [
        reporter(case_id, email, t0),  # the reporter before the case: either order works
        opened(case_id, source, t0),
        triaged(case_id, [u1, u2], t0 + timedelta(seconds=1)),
        outcome(case_id, u1, url1, "tiktok", "submitted", t0 + timedelta(seconds=2)),
        outcome(case_id, u2, url2, "tiktok", "submitted", t0 + timedelta(seconds=2)),
        outcome(
            case_id,
            u1,
            url1,
            "tiktok",
            "decided",
            t0 + timedelta(seconds=3),
            decision="removed",
            reason="Violates our bullying and harassment policy",
        ),
        outcome(case_id, u2, url2, "tiktok", "needs_manual", t0 + timedelta(seconds=3), reason="x"),
    ]
    after = [
        outcome(
            case_id,
            u2,
            url2,
            "tiktok",
            "closed",
            t0 + timedelta(seconds=4),
            reason="closed by practitioner: advice given",  # ours, not the platform's
        ),
    ]
    return before, after


@pytest.fixture(scope="module")
def catcher() -> Iterator[tuple[Catcher, int]]:
    handler = Catcher()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def notify(
    infra: Infra, tmp_dir: Path, catcher: tuple[Catcher, int]
) -> AsyncIterator[Notify]:
    handler, smtp_port = catcher
    with dedicated_broker(infra, tmp_dir) as servers:
        database_url = await fresh_database(infra, "helpline_notify_e2e")
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": database_url,
            "HELPLINE_NOTIFY_PORT": str(free_port()),
            "HELPLINE_SMTP_HOST": "127.0.0.1",
            "HELPLINE_SMTP_PORT": str(smtp_port),
            "HELPLINE_SMTP_TIMEOUT_S": str(SMTP_TIMEOUT_S),
            "HELPLINE_DELIVERY_RETRY_BASE_S": "0.2",
            "HELPLINE_RECEIPT_OPT_OUT_SOURCES": json.dumps([OPTED_OUT]),
            "HELPLINE_STATUS_BASE_URL": "https://status.helpline.example",
            "HELPLINE_LOG_JSON": "true",
        }
        fields: dict[str, Any] = {k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()}
        fields["receipt_opt_out_sources"] = [OPTED_OUT]
        settings = Settings(**fields)
        stack = await Stack.prepare(settings, log_dir=tmp_dir / "notify-e2e", extra_env=env)
        producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
        await producer.start()
        try:
            await stack.start_services(("notify",))
            handler.victim = lambda: stack.procs["notify"].pid
            yield Notify(stack, handler, producer, database_url)
        finally:
            await producer.stop()
            await asyncio.to_thread(stack.stop)


async def caught(n: Notify, email: str, count: int, what: str) -> list[EmailMessage]:
    async def check() -> tuple[bool, Any]:
        got = n.catcher.to(email)
        return len(got) >= count, [m["Subject"] for m in got]

    await wait_until(check, 60, what)
    return n.catcher.to(email)


async def test_one_receipt_and_one_outcome_per_case_under_redelivery(notify: Notify) -> None:
    case_id = uuid.uuid4()
    email = f"dsl.{case_id.hex[:8]}@school.example"
    before, after = story(case_id, email)
    await notify.publish(before)
    [receipt] = await caught(notify, email, 1, "the receipt")
    reference = case_reference(case_id)
    assert reference in receipt["Subject"]
    text = receipt.get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert reference in body
    assert "https://status.helpline.example/status/" in body
    assert re.search(r"It works until \d{1,2} [A-Z][a-z]+ \d{4}\.", body), body  # no padding
    assert receipt.get_body(("html",)) is not None
    # One URL waits for a person (needs_manual): no outcome yet.
    await notify.applied(case_id)
    assert [m["kind"] for m in await notify.mails(case_id)] == ["receipt"]

    await notify.publish(after)
    mails = await caught(notify, email, 2, "the outcome")
    outcome_mail = mails[1]
    assert reference in outcome_mail["Subject"]
    plain = outcome_mail.get_body(("plain",))
    assert plain is not None
    words = plain.get_content()
    assert "removed the content" in words
    assert "Violates our bullying and harassment policy" in words
    assert "dealt with this themselves" in words  # the closed URL
    assert "advice given" not in words  # an internal reason is not the platform's
    for redress in ("appeal to the platform", "on your behalf", "Article 21", "Ofcom"):
        assert redress.lower() in words.lower()

    # Everything again, in another order: nothing more is queued or sent.
    await notify.publish([*reversed(after), *reversed(before)])
    await notify.applied(case_id)
    await asyncio.sleep(2)  # a wrongly queued email would be sent within this
    assert len(notify.catcher.to(email)) == 2
    rows = await notify.mails(case_id)
    assert [(r["key"], r["kind"]) for r in rows] == [
        (f"receipt:{case_id}", "receipt"),
        (f"outcome:{case_id}", "outcome"),
    ]
    assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in rows)
    ids = {m["Message-ID"] for m in notify.catcher.to(email)}
    assert len(ids) == 2


async def test_a_sigkill_between_sending_and_recording_sends_again_recorded_once(
    notify: Notify,
) -> None:
    case_id = uuid.uuid4()
    email = f"killed.{case_id.hex[:8]}@school.example"
    notify.catcher.kill_for.add(email)
    before, after = story(case_id, email)
    await notify.publish([*before, *after])
    await caught(notify, email, 1, "the first send, which kills notify")

    async def dead() -> tuple[bool, Any]:
        code = notify.stack.procs["notify"].poll()
        return code is not None, code

    await wait_until(dead, 30, "notify killed")
    assert notify.stack.procs["notify"].returncode == -signal.SIGKILL
    notify.stack.restart_service("notify")
    await notify.stack.wait_ready(("notify",), timeout_s=120)

    async def recorded() -> tuple[bool, Any]:
        rows = await notify.mails(case_id)
        return len(rows) == 2 and all(r["sent_at"] for r in rows), [dict(r) for r in rows]

    await wait_until(recorded, 90, "both emails recorded as sent")
    got = notify.catcher.to(email)
    by_id: dict[str, list[EmailMessage]] = {}
    for m in got:
        by_id.setdefault(str(m["Message-ID"]), []).append(m)
    # Two emails (receipt, outcome); the one killed in flight arrived twice, same Message-ID.
    assert len(by_id) == 2, list(by_id)
    assert sorted(len(v) for v in by_id.values()) == [1, 2]
    [twice] = [v for v in by_id.values() if len(v) == 2]
    assert twice[0]["Subject"] == twice[1]["Subject"]
    assert twice[0].get_body(("plain",)).get_content() == (  # type: ignore[union-attr]
        twice[1].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    )
    rows = await notify.mails(case_id)
    assert max(r["attempts"] for r in rows) == 2  # claimed again after the lease, sent once


@pytest.mark.parametrize("source", [OPTED_OUT, "simulated:2024"])
async def test_a_source_that_opted_out_or_a_simulated_one_gets_no_email(
    notify: Notify, source: str
) -> None:
    case_id = uuid.uuid4()
    email = f"partner.{case_id.hex[:8]}@school.example"
    before, after = story(case_id, email, source=source)
    await notify.publish([*before, *after])
    await notify.applied(case_id)
    await asyncio.sleep(2)
    assert await notify.mails(case_id) == []
    assert notify.catcher.to(email) == []


async def test_an_erased_reporter_gets_nothing_more_and_is_kept_nowhere(notify: Notify) -> None:
    # Erased before anything was sent: no email at all.
    first = uuid.uuid4()
    email = f"erased.{first.hex[:8]}@school.example"
    before, after = story(first, email)
    erase = ReporterDetailsV1(
        event_id=uuid.uuid4(),
        case_id=first,
        reporter=None,
        occurred_at=datetime.now(UTC) - timedelta(minutes=4),
    )
    # The erasure first, then older details arriving late: they are ignored.
    await notify.publish([erase, *before, *after])
    await notify.applied(first)
    await asyncio.sleep(2)
    assert await notify.mails(first) == []
    assert notify.catcher.to(email) == []

    # Erased after the receipt: no outcome, and the address leaves every notify table.
    second = uuid.uuid4()
    email2 = f"erased.{second.hex[:8]}@school.example"
    before, after = story(second, email2)
    await notify.publish(before)
    await caught(notify, email2, 1, "the receipt")
    await notify.publish(
        [
            ReporterDetailsV1(
                event_id=uuid.uuid4(),
                case_id=second,
                reporter=None,
                occurred_at=datetime.now(UTC),
            ),
            *after,
        ]
    )
    await notify.applied(second)
    await asyncio.sleep(2)
    assert len(notify.catcher.to(email2)) == 1
    rows = await notify.mails(second)
    assert [(r["kind"], r["recipient"]) for r in rows] == [("receipt", None)]
    for table, column in (("cases", "reporter_email"), ("mail", "recipient")):
        held = await notify.fetch(
            f"SELECT 1 FROM notify.{table} WHERE {column} = ANY($1::text[])",
            [email, email2],
        )
        assert held == [], table


async def test_an_invalid_reporter_event_is_dead_lettered_without_the_reporter(
    notify: Notify,
) -> None:
    case_id = uuid.uuid4()
    email = f"invalid.{case_id.hex[:8]}@school.example"
    bad = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "case_id": str(case_id),
        "reporter": {"name": "A. Teacher", "email": email},
        # occurred_at missing
    }
    await notify.producer.send_and_wait(
        CASE_REPORTERS.name, json.dumps(bad).encode(), key=str(case_id).encode()
    )
    servers = notify.stack.env["HELPLINE_KAFKA_BOOTSTRAP_SERVERS"]
    [dead] = await read_topic(
        servers,
        "helpline.notify.dlq",
        keep=lambda r: r.key == str(case_id).encode(),
        expected=1,
        timeout_s=60,
    )
    headers = {k: v.decode() for k, v in dead.headers}
    assert "occurred_at" in headers["dlq_error"]
    assert email.encode() not in dead.value
    assert json.loads(dead.value)["reporter"] == "[redacted]"
    assert await notify.mails(case_id) == []
