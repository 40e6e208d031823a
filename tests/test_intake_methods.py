"""Only the methods a route serves reach it: anything else on the form or the API is
answered 405 with an `Allow` header and is not counted as a submission."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from helpline_shared.topics import REPORTS_REJECTED
from tests.helpers import read_topic
from tests.infra import Infra
from tests.intake_support import IntakeUnderTest, intake_under_test, report

METHODS = ["HEAD", "OPTIONS", "PUT", "DELETE", "PATCH", "TRACE"]
ALLOWED = {"/report": "GET, POST", "/v1/reports": "POST"}


@pytest.fixture
async def intake(infra: Infra, topics_settings: object) -> AsyncIterator[IntakeUnderTest]:
    async for found in intake_under_test(infra):
        yield found


async def refusals_mentioning(intake: IntakeUnderTest, marker: str) -> int:
    def mentions(r: object) -> bool:
        event = json.loads(r.value)  # type: ignore[attr-defined]
        return marker.encode() in base64.b64decode(event.get("original_base64", ""))

    return len(await read_topic(intake.servers, REPORTS_REJECTED.name, keep=mentions))


@pytest.mark.parametrize("path", sorted(ALLOWED))
async def test_other_methods_are_405_with_allow_and_not_submissions(
    intake: IntakeUnderTest, path: str
) -> None:
    marker = f"src-{uuid.uuid4().hex[:8]}"
    before = await intake.db.pool.fetchval("SELECT count(*) FROM intake.rejections")
    body = (
        json.dumps(report(marker)).encode()
        if path == "/v1/reports"
        else f"report_id={marker}&name=N&email=n%40school.example".encode()
    )

    for method in METHODS:
        answer = await intake.http.request(method, path, content=body)

        assert answer.status_code == 405, (method, answer.status_code)
        assert answer.headers["allow"] == ALLOWED[path], method

    assert await refusals_mentioning(intake, marker) == 0
    after = await intake.db.pool.fetchval("SELECT count(*) FROM intake.rejections")
    assert after == before


async def test_get_on_the_api_is_405_too(intake: IntakeUnderTest) -> None:
    answer = await intake.http.get("/v1/reports")

    assert answer.status_code == 405
    assert answer.headers["allow"] == "POST"
