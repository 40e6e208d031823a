"""Version 1 and version 2 of the report contract side by side, on the real broker and
database, through the intake service as its clients use it (Kafka topic and HTTP API): both
open cases; version 2's prior report to the platform is stored and carried on
`helpline.cases.opened`, version 1's case event is as before (no `prior_report` key, so a
consumer not yet released with the field still reads it); an unknown `schema_version` is
refused with one clear reason."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from helpline_intake.app import create_app
from helpline_shared.events import CaseOpenedV1, ReportRejectedV1, derive_id
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, REPORTS_REJECTED, REPORTS_SUBMITTED
from tests.conftest import fresh_database
from tests.helpers import create_key, keyed_client, read_topic
from tests.infra import Infra, dedicated_broker
from tests.intake_support import intake_under_test, record
from tests.served import served
from tests.test_report_form import form_tokens

EXAMPLES = Path(__file__).resolve().parent.parent / "docs/contracts/examples"
V1 = json.loads((EXAMPLES / "helpline.reports.submitted.v1.json").read_text())
V2 = json.loads((EXAMPLES / "helpline.reports.submitted.v2.json").read_text())


def report(example: dict[str, Any], source: str, report_id: str) -> dict[str, Any]:
    out = copy.deepcopy(example)
    out.update(source=source, report_id=report_id)
    return out


async def test_v1_and_v2_reports_side_by_side_both_open_cases(infra: Infra, tmp_dir: Path) -> None:
    source = f"versions-{uuid.uuid4().hex[:8]}"
    sent = {
        "kafka-v1": report(V1, source, "kafka-v1"),
        "kafka-v2": report(V2, source, "kafka-v2"),
        "http-v1": report(V1, source, "http-v1"),
        "http-v2": report(V2, source, "http-v2"),
    }
    not_reported = {"reported_to_platform": False}
    sent["http-v2"]["prior_report"] = not_reported
    unknown = report(V2, source, "kafka-v3") | {"schema_version": 3}

    with dedicated_broker(infra, tmp_dir) as servers:
        database_url = await fresh_database(infra, "helpline_versions")
        settings = Settings(kafka_bootstrap_servers=servers, database_url=database_url)
        await create_topics(settings)
        async with served(create_app(settings)) as url:
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                for rid in ("kafka-v1", "kafka-v2"):
                    await producer.send_and_wait(
                        REPORTS_SUBMITTED.name, json.dumps(sent[rid]).encode(), key=rid.encode()
                    )
                await producer.send_and_wait(
                    REPORTS_SUBMITTED.name, json.dumps(unknown).encode(), key=b"kafka-v3"
                )
            finally:
                await producer.stop()
            key = await create_key(database_url, "submit", source=source)
            async with keyed_client(url, key) as client:
                answers = {
                    rid: await client.post("/v1/reports", json=sent[rid])
                    for rid in ("http-v1", "http-v2")
                }
                refused = await client.post(
                    "/v1/reports", json=report(V1, source, "http-v7") | {"schema_version": 7}
                )
            opened = await read_topic(
                servers,
                CASES_OPENED.name,
                keep=lambda r: source.encode() in r.value,
                expected=4,
            )
            rejected = await read_topic(
                servers,
                REPORTS_REJECTED.name,
                keep=lambda r: r.key == b"kafka-v3",
                expected=1,
            )

    # HTTP: both versions accepted with their case, an unknown version refused with a reason.
    for rid, answer in answers.items():
        assert answer.status_code == 202, answer.text
        assert answer.json()["case_id"] == str(derive_id("case", source, rid))
    assert refused.status_code == 422
    assert refused.json()["errors"] == [
        {
            "loc": "schema_version",
            "message": "schema_version 7 is not a version intake reads; send 1 or 2",
            "type": "unsupported_version",
        }
    ]

    # Kafka: every accepted report opened one case, whatever its version.
    events = {CaseOpenedV1.model_validate_json(r.value).report_id: r for r in opened}
    assert set(events) == set(sent)
    for rid in ("kafka-v1", "http-v1"):
        assert "prior_report" not in json.loads(events[rid].value)
    carried = CaseOpenedV1.model_validate_json(events["kafka-v2"].value).prior_report
    assert carried is not None
    assert carried.model_dump(mode="json") == {
        **V2["prior_report"],
        "reported_at": "2026-11-18T16:40:00Z",
    }
    http_v2 = CaseOpenedV1.model_validate_json(events["http-v2"].value).prior_report
    assert http_v2 is not None
    assert http_v2.reported_to_platform is False

    (refusal,) = (ReportRejectedV1.model_validate_json(r.value) for r in rejected)
    assert [(r.loc, r.type) for r in refusal.reasons] == [("schema_version", "unsupported_version")]

    # The database keeps each report's version and version 2's prior report.
    conn = await asyncpg.connect(database_url)
    try:
        rows = {
            r["report_id"]: r
            for r in await conn.fetch(
                """SELECT report_id, schema_version, prior_reported, prior_reported_at,
                          prior_platform_answer, prior_platform_reference
                   FROM intake.reports WHERE source = $1""",
                source,
            )
        }
    finally:
        await conn.close()
    assert set(rows) == set(sent)
    assert dict(rows["kafka-v2"]) == {
        "report_id": "kafka-v2",
        "schema_version": 2,
        "prior_reported": True,
        "prior_reported_at": datetime(2026, 11, 18, 16, 40, tzinfo=UTC),
        "prior_platform_answer": "no_violation_found",
        "prior_platform_reference": "TT-REPORT-88123",
    }
    assert (rows["http-v2"]["schema_version"], rows["http-v2"]["prior_reported"]) == (2, False)
    for rid in ("kafka-v1", "http-v1"):
        assert rows[rid]["schema_version"] == 1
        assert rows[rid]["prior_reported"] is None


async def test_the_web_form_asks_about_a_prior_report_and_sends_version_2(infra: Infra) -> None:
    """Answered, the question makes the form's report version 2, stored with its answer;
    left unanswered, the report is version 1 as before."""
    marker = uuid.uuid4().hex[:8]
    fields = {
        "name": "N",
        "email": "n@school.example",
        "description": "A fake account of our head teacher.",
        "urls": "https://www.tiktok.com/@fake_head",
    }
    answered = fields | {
        "report_id": f"form-v2-{marker}",
        "reported_to_platform": "yes",
        "reported_on": "2026-11-18",
        "platform_answer": "no_answer_yet",
        "platform_reference": "",
    }
    async for intake in intake_under_test(infra):
        page = await intake.http.get("/report")
        assert 'name="reported_to_platform"' in page.text
        answered |= await form_tokens(intake.http)
        assert (await intake.http.post("/report", data=answered)).status_code == 202
        plain = fields | {"report_id": f"form-v1-{marker}"} | await form_tokens(intake.http)
        assert (await intake.http.post("/report", data=plain)).status_code == 202
        published = {
            json.loads(r.value)["report_id"]: r
            for r in await intake.topic(REPORTS_SUBMITTED.name, marker)
        }
        v2 = json.loads(published[f"form-v2-{marker}"].value)
        assert (v2["schema_version"], v2["prior_report"]) == (
            2,
            {
                "reported_to_platform": True,
                "reported_at": "2026-11-18T00:00:00Z",
                "platform_answer": "no_answer_yet",
                "platform_reference": None,
            },
        )
        v1 = json.loads(published[f"form-v1-{marker}"].value)
        assert v1["schema_version"] == 1
        assert "prior_report" not in v1

        await intake.service.process(
            [record(9100 + n, r.value) for n, r in enumerate(published.values())]
        )
        row = await intake.db.pool.fetchrow(
            "SELECT schema_version, prior_reported, prior_reported_at, prior_platform_answer"
            " FROM intake.reports WHERE report_id = $1",
            f"form-v2-{marker}",
        )
        assert tuple(row) == (2, True, datetime(2026, 11, 18, tzinfo=UTC), "no_answer_yet")
