"""The per-recipient mail limit as an attacker or a busy night would try it, on a real
PostgreSQL and an aiosmtpd server run by the test: the same address spelled in other
letter cases is one recipient (the public form must not become a way to mail-bomb someone
past the limit), and an alert to the people on duty is never held back by the limit (a
night of critical cases must page them at once, not an hour later)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from helpline_notify.mail import Sender
from helpline_shared.db import Database
from tests.conftest import opened_database
from tests.infra import Infra
from tests.test_notify_mail import Server, address, drain, queue, row, server, settings_for

__all__ = ["server"]  # the SMTP server fixture, shared with test_notify_mail


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_review_notify_limits") as database:
        yield database


async def test_one_address_in_other_letter_cases_shares_the_limit(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, mail_per_recipient_limit="2/hour")
    victim = address("victim")
    local, _, domain = victim.partition("@")
    spellings = [victim, f"{local.upper()}@{domain}", f"{local}@{domain.upper()}"]
    keys = [f"receipt:{uuid.uuid4()}" for _ in spellings]
    for key, to in zip(keys, spellings, strict=True):
        await queue(db, key, to)
    await drain(Sender(db, settings), 2)
    delivered = [m for rcpt, m in handler.caught if any(r.lower() == victim for r in rcpt)]
    assert len(delivered) == 2
    third = await row(db, keys[2])
    assert third["sent_at"] is None  # postponed, not dropped
    assert third["gave_up_at"] is None


async def test_alerts_to_the_people_on_duty_are_not_held_by_the_limit(
    db: Database, server: tuple[Server, int]
) -> None:
    handler, port = server
    settings = settings_for(port, mail_per_recipient_limit="1/hour")
    duty = address("duty")
    keys = [f"alert:case.critical:{uuid.uuid4()}:{duty}" for _ in range(4)]
    for key in keys:
        await queue(db, key, duty, kind="alert")
    await drain(Sender(db, settings), 2)
    assert len(handler.to(duty)) == 4
    for key in keys:
        assert (await row(db, key))["sent_at"] is not None
