"""A resubmission of a stored `(source, report_id)` with other content is a conflict, not a
duplicate: 409 with problem details over HTTP, a `conflict` rejection over Kafka, stored,
published once per position, and counted in the totals."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from helpline_metrics import projection
from helpline_metrics.totals import totals
from helpline_shared.events import ReportRejectedV1
from helpline_shared.topics import CASES_OPENED, REPORTS_REJECTED
from tests.conftest import fresh_database
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, record, report
from tests.test_report_form import form_tokens


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


def encode(data: dict[str, Any], indent: int | None = None) -> bytes:
    return json.dumps(data, indent=indent).encode()


async def conflicts(intake: IntakeUnderTest, source: str) -> list[dict[str, Any]]:
    events = [json.loads(r.value) for r in await intake.topic(REPORTS_REJECTED.name, source)]
    return [e for e in events if [r["type"] for r in e["reasons"]] == ["conflict"]]


async def stored(intake: IntakeUnderTest, source: str) -> list[asyncpg.Record]:
    return await intake.db.pool.fetch(
        "SELECT description, duplicates FROM intake.reports WHERE source = $1", source
    )


async def test_other_content_over_kafka_is_a_conflict_published_once(
    intake: IntakeUnderTest,
) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    first = record(8000, encode(report(source)), key=source.encode())
    other = record(8001, encode(report(source, description="Changed text")), key=source.encode())

    await intake.service.process([first, other])
    await intake.service.process([first, other])  # the batch redelivered

    rows = await stored(intake, source)
    assert [(r["description"], r["duplicates"]) for r in rows] == [
        (report(source)["description"], 0)
    ]
    found = await conflicts(intake, source)
    assert len({e["event_id"] for e in found}) == 1
    assert found[0]["via"] == "kafka"
    assert found[0]["reasons"][0]["loc"] == "report_id"
    assert found[0]["source_offset"] == 8001
    assert await intake.db.pool.fetchval(
        "SELECT count(*) FROM intake.rejections WHERE rejection_id = $1",
        uuid.UUID(found[0]["event_id"]),
    )
    assert len({json.loads(r.value)["event_id"] for r in await opened(intake, source)}) == 1


async def opened(intake: IntakeUnderTest, source: str) -> list[Any]:
    return await intake.topic(CASES_OPENED.name, source)


async def test_the_same_content_written_differently_is_a_duplicate(
    intake: IntakeUnderTest,
) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    again = report(source)
    again["description"] = f"  {again['description']}  "  # stripped by validation

    await intake.service.process(
        [record(8100, encode(report(source))), record(8101, encode(again, indent=2))]
    )

    assert [r["duplicates"] for r in await stored(intake, source)] == [1]
    assert await conflicts(intake, source) == []


async def test_other_content_over_http_is_409_with_problem_details(
    intake: IntakeUnderTest,
) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    await intake.service.process([record(8200, encode(report(source)))])

    same = await intake.http.post("/v1/reports", json=report(source))
    answer = await intake.http.post("/v1/reports", json=report(source, description="Other"))

    assert same.status_code == 202
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 409
    assert problem["title"]
    assert problem["type"].endswith("conflict")
    assert [e["type"] for e in problem["errors"]] == ["conflict"]
    found = await conflicts(intake, source)
    assert [(e["event_id"], e["via"]) for e in found] == [(problem["rejection_id"], "http")]


async def test_other_content_right_after_an_accepted_one_is_409_before_it_is_stored(
    intake: IntakeUnderTest,
) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"  # nothing consumed: the first is not stored yet
    first = await intake.http.post("/v1/reports", json=report(source))
    again = await intake.http.post("/v1/reports", json=report(source))
    other = await intake.http.post("/v1/reports", json=report(source, description="Other"))
    assert (first.status_code, again.status_code, other.status_code) == (202, 202, 409)
    assert other.json()["errors"][0]["type"] == "conflict"


async def test_a_conflicting_form_is_refused_409(intake: IntakeUnderTest) -> None:
    source_id = f"form-{uuid.uuid4().hex[:6]}"
    fields = {
        "report_id": source_id,
        "name": "N",
        "email": "n@school.example",
        "description": "First text",
        "urls": "https://www.tiktok.com/@a",
        **await form_tokens(intake.http),
    }
    first = await intake.http.post("/report", data=fields)
    assert first.status_code == 202
    [published] = await intake.topic("helpline.reports.submitted", source_id)
    await intake.service.process([record(8300, published.value)])

    answer = await intake.http.post("/report", data={**fields, "description": "Other text"})

    assert answer.status_code == 409
    assert "conflict" in answer.text or "already" in answer.text


async def test_conflicts_are_counted_by_type_in_the_totals(infra: Infra) -> None:
    conn = await asyncpg.connect(await fresh_database(infra, "helpline_metrics"))
    try:
        event = ReportRejectedV1.model_validate(
            {
                "event_id": str(uuid.uuid4()),
                "rejected_at": "2026-11-25T09:30:00Z",
                "via": "http",
                "reasons": [{"loc": "report_id", "message": "m", "type": "conflict"}],
                "original_base64": "",
            }
        )
        async with conn.transaction():
            await projection.apply(conn, [event, event])
        counters = dict(
            await conn.fetch("SELECT label, value FROM metrics.counters WHERE name = $1", "x")
        )
        by_type = {
            r["label"]: r["value"]
            for r in await conn.fetch(
                "SELECT label, value FROM metrics.counters WHERE name = 'reports_rejected_by_type'"
            )
        }
        figures = await totals(conn)
    finally:
        await conn.close()
    assert counters == {}
    assert by_type == {"conflict": 1}
    assert figures["reports_rejected"] == 1
    assert figures["reports_rejected_by_type"] == {"conflict": 1}
