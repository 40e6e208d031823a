"""Notify's work on one consumed batch (helpline_notify.usecase.apply and queue_due) on a real
PostgreSQL: a batch mixing several cases' events of every topic, late and out-of-order ones
among them, leaves what the events applied one by one in that order would (each URL's
latest state, the reporter's latest address, an erasure final), queues each due email once
with one status link per case, and a redelivered batch changes nothing."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helpline_notify.usecase import Event, apply, queue_due
from helpline_shared.db import Database
from helpline_shared.events import ReporterDetailsV1
from helpline_shared.settings import Settings
from tests.conftest import opened_database
from tests.infra import Infra
from tests.test_notify_receipts_e2e import opened, outcome, reporter, triaged


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_notify_batch") as database:
        yield database


async def consume(db: Database, events: list[Event]) -> tuple[int, int]:
    """One batch as `Notify.process` applies it: (events applied, emails queued)."""
    async with db.pool.acquire() as conn, conn.transaction():
        applied = await apply(conn, events)
        queued = await queue_due(conn, {e.case_id for e in applied}, Settings())
    return len(applied), queued


async def mails(db: Database, case_id: uuid.UUID) -> list[dict[str, Any]]:
    rows = await db.pool.fetch(
        "SELECT kind, recipient, body_text FROM notify.mail WHERE case_id = $1 ORDER BY seq",
        case_id,
    )
    return [dict(r) for r in rows]


async def test_a_batch_of_several_cases_applies_each_in_order_and_queues_each_email_once(
    db: Database,
) -> None:
    t = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    done, erased, moved = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    u1, u2 = uuid.uuid4(), uuid.uuid4()
    url1, url2 = "https://www.tiktok.com/@a/video/0", "https://www.tiktok.com/@a/video/1"
    batch: list[Event] = [
        # Every URL final; the first URL's older state arrives last and must not win.
        outcome(done, u1, url1, "tiktok", "decided", t + timedelta(hours=3), "removed"),
        opened(done, "web-form", t),
        reporter(done, "done@school.example", t),
        triaged(done, [u1, u2], t),
        outcome(done, u2, url2, "tiktok", "failed", t + timedelta(hours=2)),
        outcome(done, u1, url1, "tiktok", "submitted", t + timedelta(hours=1)),
        # Erased in the same batch that brought the address: nothing is queued.
        opened(erased, "web-form", t),
        reporter(erased, "gone@school.example", t),
        ReporterDetailsV1(
            event_id=uuid.uuid4(), case_id=erased, reporter=None, occurred_at=t + timedelta(days=1)
        ),
        reporter(erased, "late@school.example", t + timedelta(days=2)),
        # A newer address, then the older one late: the newer stays.
        reporter(moved, "new@school.example", t + timedelta(hours=2)),
        opened(moved, "web-form", t),
        reporter(moved, "old@school.example", t),
    ]
    assert await consume(db, batch) == (len(batch), 3)

    sent = await mails(db, done)
    assert [(m["kind"], m["recipient"]) for m in sent] == [
        ("receipt", "done@school.example"),
        ("outcome", "done@school.example"),
    ]
    states = await db.pool.fetch("SELECT url_id, state FROM notify.urls WHERE case_id = $1", done)
    assert {r["url_id"]: r["state"] for r in states} == {u1: "decided", u2: "failed"}
    assert await mails(db, erased) == []
    gone = await db.pool.fetchrow(
        "SELECT reporter_email, erased_at FROM notify.cases WHERE case_id = $1", erased
    )
    assert gone is not None
    assert gone["reporter_email"] is None
    assert gone["erased_at"] is not None
    assert [(m["kind"], m["recipient"]) for m in await mails(db, moved)] == [
        ("receipt", "new@school.example")
    ]
    links = await db.pool.fetch(
        "SELECT case_id, count(*) AS n FROM notify.status_links"
        " WHERE case_id = ANY($1::uuid[]) GROUP BY case_id",
        [done, erased, moved],
    )
    # The receipt and the outcome queued together carry the same link.
    assert {r["case_id"]: r["n"] for r in links} == {done: 1, moved: 1}
    [link] = {
        m for mail in sent for m in re.findall(r"/status/[A-Za-z0-9_-]{43}", mail["body_text"])
    }
    assert link

    # Redelivered: nothing applied, nothing queued, nothing changed.
    assert await consume(db, batch) == (0, 0)
    assert len(await mails(db, done)) == 2
    assert len(await mails(db, moved)) == 1
