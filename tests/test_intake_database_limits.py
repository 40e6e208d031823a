"""What the database would refuse is refused at validation, with a reason; what validation
accepts is stored. So `202` over HTTP always means a case exists or will."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import pytest

from helpline_intake.validation import validate_report
from helpline_shared.events import ReportSubmittedV1
from helpline_shared.topics import CASES_OPENED
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, record, report


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


# After conversion to UTC these leave the years 1-9999 that a report can carry.
UNREPRESENTABLE = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00+14:00"]
# The extremes that stay inside: each must be stored, not dead-lettered.
EXTREMES = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T11:59:59-12:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T14:00:00+14:00",
    "2026-11-25T09:30:00",
]


@pytest.mark.parametrize("submitted_at", UNREPRESENTABLE)
def test_a_time_outside_the_utc_range_is_refused_with_a_reason(submitted_at: str) -> None:
    result = validate_report(json.dumps(report("s", submitted_at=submitted_at)).encode())

    assert isinstance(result, list), result
    assert [(r.loc, r.type) for r in result] == [("submitted_at", "value_error")]
    assert submitted_at not in result[0].message


async def test_over_http_such_a_report_is_answered_422_not_202(intake: IntakeUnderTest) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"

    answer = await intake.http.post(
        "/v1/reports", json=report(source, submitted_at=UNREPRESENTABLE[0])
    )

    assert answer.status_code == 422, answer.text
    assert [e["loc"] for e in answer.json()["errors"]] == ["submitted_at"]


async def test_every_time_validation_accepts_is_stored_and_opens_a_case(
    intake: IntakeUnderTest,
) -> None:
    source = f"src-{uuid.uuid4().hex[:6]}"
    raws = [
        json.dumps(report(source, f"r{i}", submitted_at=at)).encode()
        for i, at in enumerate(EXTREMES)
    ]
    assert all(isinstance(validate_report(raw), ReportSubmittedV1) for raw in raws)

    await intake.service.process([record(7000 + i, raw) for i, raw in enumerate(raws)])

    stored = await intake.db.pool.fetchval(
        "SELECT count(*) FROM intake.reports WHERE source = $1", source
    )
    assert stored == len(EXTREMES)
    assert len(await intake.topic(CASES_OPENED.name, source)) == len(EXTREMES)
