"""The mail outbox (helpline_notify.mail) on a real PostgreSQL and an aiosmtpd server run
by the test: one email per key, a Message-ID derived from the key, the per-recipient limit
postponing (never dropping) an email, a temporary refusal retried with backoff until it is
sent or `delivery_max_attempts` is spent, a permanent refusal given up at once with its
reason (without the address it quotes), no address in the logs, the emails of one step
over one SMTP connection (opened again once if it drops), and the recipient limit's lookup
answered by an index."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from helpline_cli.infra import free_port
from helpline_notify.mail import _CHECK, Sender, message_id, oldest_due_seconds, queue_mail
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from tests.conftest import opened_database
from tests.infra import Infra


@dataclass
class Server:
    """Accepts every email, except: an address in `refuse` gets that reply (always), one in
    `refuse_once` gets it the first time only."""

    caught: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    refuse_once: dict[str, str] = field(default_factory=dict)
    drop_once: set[str] = field(default_factory=set)  # connection closed at this RCPT, once
    ehlo: list[str] = field(default_factory=list)  # the name each connection gave
    sessions: list[Session] = field(default_factory=list)  # the connection of each caught

    async def handle_EHLO(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: Any
    ) -> Any:
        self.ehlo.append(hostname)
        session.host_name = hostname  # what aiosmtpd's own EHLO would have done
        return responses

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if address in self.refuse_once:
            return self.refuse_once.pop(address)
        if address in self.drop_once:
            self.drop_once.discard(address)
            assert server.transport is not None
            server.transport.close()
            return "421 4.3.2 Closing"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = message_from_bytes(raw, policy=policy.default)
        assert isinstance(message, EmailMessage)
        self.caught.append(([str(r) for r in envelope.rcpt_tos], message))
        self.sessions.append(session)
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpt, m in self.caught if address in rcpt]


@pytest.fixture
def server() -> Iterator[tuple[Server, int]]:
    handler = Server()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_notify_mail") as database:
        yield database


def settings_for(port: int, **extra: Any) -> Settings:
    return Settings(
        database_url="postgresql://unused.invalid/x",
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_timeout_s=5,
        delivery_retry_base_s=0.05,
        delivery_retry_max_s=0.2,
        **extra,
    )


async def queue(db: Database, key: str, to: str, kind: str = "receipt") -> bool:
    async with db.pool.acquire() as conn, conn.transaction():
        return await queue_mail(
            conn,
            key=key,
            to=to,
            subject=f"Subject of {key}",
            text=f"Text of {key}\n",
            html=f"<p>HTML of {key}</p>",
            kind=kind,
            case_id=uuid.uuid4(),
        )


async def row(db: Database, key: str) -> dict[str, Any]:
    found = await db.pool.fetchrow("SELECT * FROM notify.mail WHERE key = $1", key)
    assert found is not None
    return dict(found)


async def drain(sender: Sender, times: int = 1) -> None:
    for _ in range(times):
        while await sender.step():
            pass


def address(tag: str) -> str:
    return f"{tag}.{uuid.uuid4().hex[:8]}@school.example"


async def test_a_key_queued_twice_is_one_email_with_a_message_id_from_its_key(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port)
    to = address("once")
    key = f"receipt:{uuid.uuid4()}"
    assert await queue(db, key, to) is True
    assert await queue(db, key, to) is False
    await drain(Sender(db, settings), 2)
    [sent] = handler.to(to)
    assert sent["Message-ID"] == message_id(key, settings.mail_from)
    assert message_id(key, settings.mail_from).endswith("@example.org>")
    assert sent["Subject"] == f"Subject of {key}"
    assert sent["From"] == settings.mail_from
    plain, html = sent.get_body(("plain",)), sent.get_body(("html",))
    assert plain is not None and html is not None  # noqa: PT018
    assert plain.get_content().splitlines() == [f"Text of {key}"]
    stored = await row(db, key)
    assert stored["sent_at"] is not None
    assert stored["attempts"] == 1
    await drain(Sender(db, settings))
    assert len(handler.to(to)) == 1


async def test_the_recipient_limit_postpones_an_email_and_never_drops_it(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, mail_per_recipient_limit="2/hour")
    busy, other = address("busy"), address("other")
    keys = [f"k:{uuid.uuid4()}" for _ in range(3)]
    for key in keys:
        await queue(db, key, busy)
    await queue(db, f"k:{uuid.uuid4()}", other)
    sender = Sender(db, settings)
    await drain(sender)
    assert len(handler.to(busy)) == 2
    assert len(handler.to(other)) == 1  # another address is not held up
    first, _, third = [await row(db, k) for k in keys]
    assert third["sent_at"] is None
    assert third["gave_up_at"] is None
    assert third["attempts"] == 0  # waiting for the limit is not a failed try
    wait = third["due_at"] - first["sent_at"]
    assert timedelta(minutes=59) < wait <= timedelta(hours=1, seconds=1)
    await drain(sender)
    assert len(handler.to(busy)) == 2  # still within the hour

    # An hour later (the first two sent long ago): the third goes out.
    await db.pool.execute(
        "UPDATE notify.mail SET sent_at = sent_at - interval '61 minutes' WHERE key = ANY($1)",
        keys[:2],
    )
    await db.pool.execute("UPDATE notify.mail SET due_at = now() WHERE key = $1", keys[2])
    await drain(sender)
    assert len(handler.to(busy)) == 3
    assert (await row(db, keys[2]))["sent_at"] is not None


async def test_a_temporary_refusal_is_retried_then_sent_or_given_up(
    db: Database, server: tuple[Server, int], capsys: pytest.CaptureFixture[str]
) -> None:
    handler, port = server
    settings = settings_for(port, delivery_max_attempts=3)
    flaky, down = address("flaky"), address("down")
    handler.refuse_once[flaky] = "451 4.3.0 Try again later"
    handler.refuse[down] = "452 4.2.2 Mailbox full"
    flaky_key, down_key = f"k:{uuid.uuid4()}", f"k:{uuid.uuid4()}"
    await queue(db, flaky_key, flaky)
    await queue(db, down_key, down)
    sender = Sender(db, settings)
    await drain(sender)
    first = await row(db, flaky_key)
    assert first["sent_at"] is None
    assert first["gave_up_at"] is None
    assert "451" in first["last_error"]
    assert first["due_at"] > first["queued_at"]  # waits its backoff

    async def settled() -> bool:
        rows = [await row(db, k) for k in (flaky_key, down_key)]
        return all(r["sent_at"] or r["gave_up_at"] for r in rows)

    for _ in range(100):
        await drain(sender)
        if await settled():
            break
        await asyncio.sleep(0.05)
    sent, gone = await row(db, flaky_key), await row(db, down_key)
    assert sent["sent_at"] is not None
    assert sent["attempts"] == 2
    assert len(handler.to(flaky)) == 1
    assert gone["sent_at"] is None
    assert gone["gave_up_at"] is not None
    assert gone["attempts"] == 3
    assert "452" in gone["last_error"]
    assert handler.to(down) == []
    logged = capsys.readouterr()
    assert down_key in logged.out + logged.err  # the key is logged ...
    for email in (flaky, down):  # ... never the address
        assert email not in logged.out + logged.err


async def test_a_permanent_refusal_is_given_up_at_once_with_its_reason(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, delivery_max_attempts=5)
    nobody = address("nobody")
    handler.refuse[nobody] = f"550 5.1.1 <{nobody}>: No such user"  # quotes the address
    key = f"k:{uuid.uuid4()}"
    await queue(db, key, nobody)
    await drain(Sender(db, settings))
    gone = await row(db, key)
    assert gone["gave_up_at"] is not None
    assert gone["attempts"] == 1
    assert "550" in gone["last_error"]
    assert "No such user" in gone["last_error"]
    assert nobody not in gone["last_error"]  # the reason is kept, the address is not


async def test_an_unreachable_server_is_retried_and_the_backlog_shows_it(db: Database) -> None:
    settings = settings_for(free_port(), delivery_max_attempts=5)
    key = f"k:{uuid.uuid4()}"
    await queue(db, key, address("unreachable"))
    await drain(Sender(db, settings))
    waiting = await row(db, key)
    assert waiting["sent_at"] is None
    assert waiting["gave_up_at"] is None
    assert waiting["attempts"] == 1
    assert waiting["last_error"]
    # Waiting out its backoff, queued 10 minutes ago: the backlog counts from the queueing.
    await db.pool.execute(
        "UPDATE notify.mail SET queued_at = now() - interval '10 minutes',"
        " due_at = now() + interval '1 minute' WHERE key = $1",
        key,
    )
    assert 599 < await oldest_due_seconds(db) < 700
    await db.pool.execute("UPDATE notify.mail SET gave_up_at = now() WHERE key = $1", key)
    assert await oldest_due_seconds(db) == 0.0


def connections(handler: Server) -> int:
    return len({id(s) for s in handler.sessions})


async def test_the_emails_of_a_step_travel_over_one_connection_refusals_each_their_own(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, delivery_max_attempts=5)
    to = [address(f"one{i}") for i in range(5)]
    handler.refuse[to[1]] = "550 5.1.1 No such user"
    handler.refuse_once[to[3]] = "451 4.3.0 Try again later"
    keys = [f"k:{uuid.uuid4()}" for _ in to]
    for key, email in zip(keys, to, strict=True):
        await queue(db, key, email)
    assert await Sender(db, settings).step() is False  # one step: every email claimed
    assert [len(handler.to(e)) for e in to] == [1, 0, 1, 0, 1]
    assert connections(handler) == 1
    assert len(handler.ehlo) == 1
    # EHLO names the sending domain (never this host's looked-up FQDN).
    assert handler.ehlo == [settings.mail_from.rpartition("@")[2].strip(">")]
    rows = [await row(db, k) for k in keys]
    assert [r["sent_at"] is not None for r in rows] == [True, False, True, False, True]
    assert rows[1]["gave_up_at"] is not None  # permanent: given up at once
    assert "550" in rows[1]["last_error"]
    assert rows[3]["gave_up_at"] is None  # temporary: waits its backoff
    assert "451" in rows[3]["last_error"]


async def test_a_connection_dropped_mid_step_is_opened_once_more(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, delivery_max_attempts=5)
    to = [address(f"drop{i}") for i in range(4)]
    handler.drop_once.add(to[2])  # the server hangs up on the third email
    keys = [f"k:{uuid.uuid4()}" for _ in to]
    for key, email in zip(keys, to, strict=True):
        await queue(db, key, email)
    await Sender(db, settings).step()
    assert [len(handler.to(e)) for e in to] == [1, 1, 1, 1]  # the third sent again, at once
    assert connections(handler) == 2
    rows = [await row(db, k) for k in keys]
    assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in rows)


async def test_a_connection_dropped_again_leaves_the_rest_to_their_retry(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, delivery_max_attempts=5)
    to = [address(f"again{i}") for i in range(4)]
    handler.drop_once.update({to[1], to[2]})  # a hang-up, then another on the reconnection
    keys = [f"k:{uuid.uuid4()}" for _ in to]
    for key, email in zip(keys, to, strict=True):
        await queue(db, key, email)
    await Sender(db, settings).step()
    rows = [await row(db, k) for k in keys]
    # The second goes on a new connection; the third breaks that one too: no third
    # connection this step, so it and the fourth wait their backoff (a try each).
    assert [r["sent_at"] is not None for r in rows] == [True, True, False, False]
    assert all(r["gave_up_at"] is None and r["attempts"] == 1 for r in rows)
    assert all(r["last_error"] for r in rows[2:])
    assert connections(handler) == 2
    for r in rows[2:]:
        await db.pool.execute("UPDATE notify.mail SET due_at = now() WHERE key = $1", r["key"])
    await drain(Sender(db, settings))
    assert [len(handler.to(e)) for e in to] == [1, 1, 1, 1]


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_recipient_limit_lookup_uses_an_index_not_a_scan_of_the_outbox(
    db: Database, plan_mode: str
) -> None:
    # Thousands of emails (most sent, to many recipients): the outbox of a busy month.
    await db.pool.execute(
        "INSERT INTO notify.mail (key, kind, recipient, subject, body_text, sent_at)"
        " SELECT 'plan:' || g, 'receipt', 'Plan' || (g % 3000) || '@School.example', 's', 't',"
        "   CASE WHEN g % 10 <> 0 THEN now() - (g || ' seconds')::interval END"
        " FROM generate_series(1, 8000) g ON CONFLICT (key) DO NOTHING"
    )
    await db.pool.execute("ANALYZE notify.mail")
    async with db.pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {plan_mode}")
        try:
            found = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) {_CHECK}", "plan7@school.example", "k:x", 3600.0, 1
            )
        finally:
            await conn.execute("RESET plan_cache_mode")
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    nodes = list(_plan_nodes(plan))
    assert [n for n in nodes if n.get("Relation Name") == "mail"], plan
    assert all(n["Node Type"] != "Seq Scan" for n in nodes), plan
    assert "notify_mail_recipient_lower" in {n.get("Index Name") for n in nodes}, plan
