"""Every refusal, whatever the channel (Kafka, HTTP API, web form), is stored in
`intake.rejections` with its reasons and published on `helpline.reports.rejected`, so the
database, the topic and the totals agree."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from helpline_intake.validation import MAX_MESSAGE_BYTES
from helpline_shared.topics import REPORTS_REJECTED
from tests.helpers import read_topic
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, report
from tests.test_report_form import form_tokens


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


async def stored_and_published(intake: IntakeUnderTest, rejection_id: str) -> tuple[Any, Any]:
    row = await intake.db.pool.fetchrow(
        "SELECT via, reasons FROM intake.rejections WHERE rejection_id = $1",
        uuid.UUID(rejection_id),
    )
    events = await read_topic(
        intake.servers,
        REPORTS_REJECTED.name,
        keep=lambda r: json.loads(r.value)["event_id"] == rejection_id,
        expected=1,
        timeout_s=10,
    )
    assert len(events) == 1, f"rejection {rejection_id} published {len(events)} times"
    return row, json.loads(events[0].value)


def form_reference(page: str) -> str:
    found = re.search(r"reference <code>([0-9a-f-]{36})</code>", page)
    assert found, page
    return found.group(1)


async def test_an_invalid_report_over_http_is_stored_and_published(
    intake: IntakeUnderTest,
) -> None:
    answer = await intake.http.post("/v1/reports", json={"schema_version": 1})

    assert answer.status_code == 422
    row, event = await stored_and_published(intake, answer.json()["rejection_id"])
    assert row is not None
    assert row["via"] == "http"
    assert event["via"] == "http"
    assert {r["loc"] for r in row["reasons"]} >= {"source", "report_id", "reporter"}
    assert event["reasons"] == row["reasons"]


async def test_a_wrong_content_type_is_stored_and_published(intake: IntakeUnderTest) -> None:
    answer = await intake.http.post(
        "/v1/reports", content=b"a=b", headers={"content-type": "text/plain"}
    )

    assert answer.status_code in (415, 422)
    row, event = await stored_and_published(intake, answer.json()["rejection_id"])
    assert [r["type"] for r in row["reasons"]] == ["content_type"]
    assert event["via"] == "http"


async def test_an_oversized_body_is_413_stored_and_published(intake: IntakeUnderTest) -> None:
    answer = await intake.http.post("/v1/reports", content=b" " * (MAX_MESSAGE_BYTES + 10))

    assert answer.status_code == 413
    row, event = await stored_and_published(intake, answer.json()["rejection_id"])
    assert [r["type"] for r in row["reasons"]] == ["too_large"]
    assert event["original_base64"] == ""


async def test_a_refused_form_is_stored_and_published_via_form(intake: IntakeUnderTest) -> None:
    fields = {"name": "N", "email": "not-an-email", **await form_tokens(intake.http)}
    answer = await intake.http.post("/report", data=fields)

    assert answer.status_code == 422
    row, event = await stored_and_published(intake, form_reference(answer.text))
    assert row["via"] == "form"
    assert event["via"] == "form"
    assert "reporter.email" in {r["loc"] for r in row["reasons"]}


async def test_an_oversized_form_is_413_stored_and_published(intake: IntakeUnderTest) -> None:
    await form_tokens(intake.http)  # a body too large to read is judged only with our cookie
    answer = await intake.http.post(
        "/report",
        content=b"description=" + b"x" * (MAX_MESSAGE_BYTES + 10),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )

    assert answer.status_code == 413
    row, event = await stored_and_published(intake, form_reference(answer.text))
    assert (row["via"], event["via"]) == ("form", "form")
    assert [r["type"] for r in row["reasons"]] == ["too_large"]


async def test_a_valid_report_over_http_is_not_a_refusal(intake: IntakeUnderTest) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    before = await intake.db.pool.fetchval("SELECT count(*) FROM intake.rejections")

    answer = await intake.http.post("/v1/reports", json=report(source))

    assert answer.status_code == 202
    assert await intake.db.pool.fetchval("SELECT count(*) FROM intake.rejections") == before
