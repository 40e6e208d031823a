"""Casework learns each case's reporter from intake, and forgets it on erasure: opening a
case queues `ReporterDetailsV1` (the reporter only) on intake's outbox in the transaction
that stores the report, published once however often the batch is redelivered;
`helpline reporter erase` queues a null reporter per erased case in the erasure's
transaction and relays it, or leaves it queued (never the reporter) when it cannot. A
version 2 report's `child_affected` is stored and carried on `helpline.cases.opened`.
On the real broker and database."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpline_shared.events import CaseOpenedV1, ReporterDetailsV1, derive_id
from helpline_shared.topics import CASE_REPORTERS, CASES_OPENED
from tests.helpers import read_topic
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, record, report
from tests.test_reporter_erasure import erase, holding

pytestmark = pytest.mark.e2e


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


def person() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "name": f"Hermione Quillfeather{tag}",
        "email": f"h.quill.{tag}@school-mail.example",
        "role": "designated safeguarding lead",
    }


async def reporter_events(intake: IntakeUnderTest, case_id: uuid.UUID) -> list[Any]:
    return await read_topic(
        intake.servers, CASE_REPORTERS.name, keep=lambda r: r.key == str(case_id).encode()
    )


async def queued(intake: IntakeUnderTest) -> list[Any]:
    return list(
        await intake.db.pool.fetch(
            "SELECT topic, key, value FROM outbox WHERE service = 'intake' ORDER BY seq"
        )
    )


def case_of(source: str, report_id: str) -> uuid.UUID:
    return derive_id("case", source, report_id)


async def test_opening_a_case_publishes_its_reporter_once_and_child_affected(
    intake: IntakeUnderTest,
) -> None:
    source = f"details-{uuid.uuid4().hex[:8]}"
    reporter = person()
    v2 = report(source, "v2", reporter=reporter) | {"schema_version": 2, "child_affected": True}
    v2_unknown = report(source, "v2-unknown") | {"schema_version": 2, "child_affected": None}
    v1 = report(source, "v1")
    batch = [record(9500 + n, json.dumps(r).encode()) for n, r in enumerate([v2, v2_unknown, v1])]

    await intake.service.process(batch)
    await intake.service.process(batch)  # redelivered: stored once, published once

    assert await queued(intake) == []  # relayed before the batch's offsets are committed
    case = case_of(source, "v2")
    [event] = await reporter_events(intake, case)
    details = ReporterDetailsV1.model_validate_json(event.value)
    assert details.case_id == case
    assert details.reporter is not None
    assert details.reporter.model_dump() == reporter
    assert set(json.loads(event.value)) == {
        "schema_version",
        "event_id",
        "case_id",
        "reporter",
        "occurred_at",
    }
    headers = dict(event.headers)
    assert headers["ce_type"] == b"helpline.case.reporter.v1"
    for rid in ("v2-unknown", "v1"):
        assert len(await reporter_events(intake, case_of(source, rid))) == 1

    opened = {
        json.loads(r.value)["report_id"]: json.loads(r.value)
        for r in await read_topic(
            intake.servers, CASES_OPENED.name, keep=lambda r: source.encode() in r.value
        )
    }
    assert opened["v2"]["child_affected"] is True
    assert CaseOpenedV1.model_validate(opened["v2"]).child_affected is True
    # Unknown, or never asked (version 1): left out, as before the field existed.
    assert "child_affected" not in opened["v2-unknown"]
    assert "child_affected" not in opened["v1"]
    # The reporter is on the opened event nowhere.
    assert reporter["email"] not in json.dumps(opened)
    stored = {
        r["report_id"]: r["child_affected"]
        for r in await intake.db.pool.fetch(
            "SELECT report_id, child_affected FROM intake.reports WHERE source = $1", source
        )
    }
    assert stored == {"v2": True, "v2-unknown": None, "v1": None}


async def test_erasure_publishes_a_null_reporter_after_the_reporter(
    intake: IntakeUnderTest,
) -> None:
    source = f"details-{uuid.uuid4().hex[:8]}"
    reporter = person()
    await intake.service.process(
        [record(9600, json.dumps(report(source, "a", reporter=reporter)).encode())]
    )
    case = case_of(source, "a")

    code, out = await erase(intake.database_url, str(case), "--yes", servers=intake.servers)

    assert code == 0, out
    assert "helpline.cases.reporters: null reporter published for 1 case(s)" in out
    events = await reporter_events(intake, case)
    assert [ReporterDetailsV1.model_validate_json(e.value).reporter is None for e in events] == [
        False,
        True,
    ]
    assert await queued(intake) == []
    # Erasing again finds nothing and publishes nothing more.
    code, out = await erase(intake.database_url, str(case), "--yes", servers=intake.servers)
    assert code == 0, out
    assert "nothing to erase" in out
    assert len(await reporter_events(intake, case)) == 2


async def test_a_reporter_still_queued_is_never_published_once_erased(
    intake: IntakeUnderTest,
) -> None:
    """While another relay holds intake's outbox, a case opens (its reporter stays queued)
    and is erased with Kafka unreachable: the queued reporter is deleted unsent, the null
    stays queued, and intake's next batch relays it."""
    source = f"details-{uuid.uuid4().hex[:8]}"
    reporter = person()
    case = case_of(source, "held")
    async with intake.db.pool.acquire() as holder:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT pg_advisory_xact_lock(hashtext('outbox:intake'))")
        try:
            await intake.service.process(
                [record(9700, json.dumps(report(source, "held", reporter=reporter)).encode())]
            )
            async with intake.db.pool.acquire() as conn:
                assert await holding(conn, reporter["email"]) == [
                    '"intake"."reports"."reporter_email"',
                    '"public"."outbox"."value"',
                ]

            code, out = await erase(
                intake.database_url, reporter["email"], "--yes", servers="127.0.0.1:9"
            )

            assert code == 0, out
            assert "null reporter queued on intake's outbox (not relayed yet)" in out
            async with intake.db.pool.acquire() as conn:
                for secret in reporter.values():
                    if secret != "designated safeguarding lead":
                        assert await holding(conn, secret) == [], secret
            [row] = await queued(intake)
            assert row["key"] == str(case).encode()
            assert ReporterDetailsV1.model_validate_json(row["value"]).reporter is None
        finally:
            await tx.rollback()

    await intake.service.process([record(9701, json.dumps(report(source, "next")).encode())])

    events = await reporter_events(intake, case)
    assert [ReporterDetailsV1.model_validate_json(e.value).reporter for e in events] == [None]
    assert await queued(intake) == []
