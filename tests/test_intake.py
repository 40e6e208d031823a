"""Intake's batch logic on real PostgreSQL and the real broker: redelivery republishes what
was stored, duplicates are counted once, and a message the database refuses is
dead-lettered alone instead of blocking its partition."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_intake import repository
from helpline_intake.usecase import Intake
from helpline_shared.consumer import BatchRunner, DeadLetters
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, DEAD_LETTERS
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra


@pytest.fixture
async def intake(
    infra: Infra, topics_settings: Settings
) -> AsyncIterator[tuple[BatchRunner, Database]]:
    """Intake's batch logic run by the runner every subscriber uses (dead-letter protocol)."""
    db = Database(await fresh_database(infra, "helpline_intake"))
    await db.open()
    broker = KafkaBroker(infra.bootstrap_servers)
    await broker.connect()
    try:
        dead = DeadLetters("intake", max_ratio=0.9, window=10)
        yield BatchRunner("intake", Intake(db, broker, dead).process, dead, broker), db
    finally:
        await broker.stop()
        await db.close()


def report(report_id: str, description: str, source: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "source": source,
            "report_id": report_id,
            "reporter": {"name": "R", "email": "r@school.example"},
            "description": description,
            "urls": ["https://www.tiktok.com/@a/video/1"],
        }
    ).encode()


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "helpline.reports.submitted", 0, offset, 0, 0, b"k", value, None, 1, len(value), ()
    )


async def messages(servers: str, topic: str, source: str) -> list[Any]:
    return await read_topic(servers, topic, keep=lambda r: source.encode() in (r.value or b""))


async def test_redelivery_republishes_the_stored_report_and_counts_duplicates_once(
    intake: tuple[BatchRunner, Database], infra: Infra
) -> None:
    service, db = intake
    source = f"src-{uuid.uuid4().hex[:6]}"
    first = record(1000, report("r1", "the original text", source))
    # The same report again (other content would be a conflict: test_intake_conflicts.py).
    repeat = record(1001, report("r1", "the original text", source))
    await service.run([first, repeat])
    await service.run([first, repeat])  # the whole batch redelivered
    rows = await db.pool.fetch("SELECT * FROM intake.reports WHERE source = $1", source)
    assert len(rows) == 1
    assert rows[0]["description"] == "the original text"
    assert rows[0]["duplicates"] == 1
    opened = await messages(infra.bootstrap_servers, CASES_OPENED.name, source)
    assert len(opened) == 2  # published, then republished on redelivery
    assert {json.loads(m.value)["description"] for m in opened} == {"the original text"}
    assert len({json.loads(m.value)["event_id"] for m in opened}) == 1


async def test_a_report_the_database_refuses_is_dead_lettered_alone(
    intake: tuple[BatchRunner, Database], infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    service, db = intake
    source = f"src-{uuid.uuid4().hex[:6]}"
    real_insert = repository.insert_reports

    async def refuse_poison(conn: Any, reports: Any) -> Any:
        if any(r.report.report_id == "poison" for r in reports):
            raise asyncpg.DataError("value out of range")
        return await real_insert(conn, reports)

    monkeypatch.setattr(repository, "insert_reports", refuse_poison)
    batch = [
        record(2000 + i, report(rid, "bullying", source))
        for i, rid in enumerate(["a", "poison", "b"])
    ]
    await service.run(batch)
    stored = await db.pool.fetch("SELECT report_id FROM intake.reports WHERE source = $1", source)
    assert sorted(r["report_id"] for r in stored) == ["a", "b"]
    dead = await messages(infra.bootstrap_servers, DEAD_LETTERS["intake"].name, source)
    assert len(dead) == 1
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert "database refused it" in headers["dlq_error"]
    assert headers["dlq_source_offset"] == "2001"
    assert json.loads(dead[0].value)["report_id"] == "poison"


async def test_a_key_with_nul_is_rejected_and_stored_not_stuck(
    intake: tuple[BatchRunner, Database], infra: Infra
) -> None:
    service, db = intake
    source = f"src-{uuid.uuid4().hex[:6]}"
    nul_key = b'{"schema_version": 1, "bad\\u0000key": "' + source.encode() + b'"}'
    await service.run([record(3000, nul_key), record(3001, report("ok", "bullying", source))])
    assert (
        await db.pool.fetchval("SELECT count(*) FROM intake.reports WHERE source = $1", source) == 1
    )
    reasons = await db.pool.fetch("SELECT reasons FROM intake.rejections")
    assert any(r["loc"] == "bad\\u0000key" for row in reasons for r in row["reasons"])
