"""Dead letters re-driven: `helpline dlq list|show|replay` on the real broker and database.

The story: a migration narrowed a column by mistake, so intake's database refused a valid
report and intake dead-lettered it (a redacted copy). After the fix, a replay puts the
original through once; a second replay is refused as recorded, and a forced one changes
nothing because intake stores a report once per (source, report_id).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_cli.dlq import from_dead_letter, show_text
from helpline_cli.dlq_replay import REPLAY_HEADER, choose, replay_one
from helpline_intake.redaction import redact_dead_letter
from helpline_intake.usecase import Intake
from helpline_shared.consumer import BatchRunner, DeadLetters
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.topic_admin import create_topics
from helpline_shared.topics import CASES_OPENED, DEAD_LETTERS, REPORTS_REJECTED, REPORTS_SUBMITTED
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.intake_support import original, record, report


def new_marker() -> str:
    """A unique text without runs of digits (redaction takes those for phone numbers)."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


@dataclass
class Stack:
    """Intake consuming `helpline.reports.submitted` as the service does, one call at a time."""

    servers: str
    database_url: str
    intake: Intake
    runner: BatchRunner
    consumer: AIOKafkaConsumer
    conn: asyncpg.Connection
    broker: KafkaBroker

    async def consume(self) -> list[Any]:
        """Processes everything new on the topic; returns the records it consumed."""
        records: list[Any] = []
        while batch := await self.consumer.getmany(timeout_ms=1500):
            for part in batch.values():
                records += part
        for attempt in range(3):  # a failed batch is redelivered, as the service does
            try:
                if records:
                    await self.runner.run(records)
                break
            except asyncpg.InvalidCachedStatementError:  # the fix changed the schema
                if attempt == 2:
                    raise
        return records

    async def helpline(self, *args: str) -> tuple[int, str]:
        env = {
            **os.environ,
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": self.servers,
            "HELPLINE_DATABASE_URL": self.database_url,
        }
        proc = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "helpline"),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode is not None
        return proc.returncode, out.decode() + err.decode()


@pytest.fixture
async def stack(infra: Infra, tmp_path: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_path) as servers:
        await create_topics(Settings(kafka_bootstrap_servers=servers))
        url = await fresh_database(infra, "helpline_dlq")
        db = Database(url)
        await db.open()
        broker = KafkaBroker(servers)
        await broker.connect()
        dead = DeadLetters("intake", max_ratio=0.9, window=10, redact=redact_dead_letter)
        intake = Intake(db, broker, dead)
        consumer = AIOKafkaConsumer(
            REPORTS_SUBMITTED.name,
            bootstrap_servers=servers,
            group_id=None,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        conn = await asyncpg.connect(url)
        try:
            yield Stack(
                servers,
                url,
                intake,
                BatchRunner("intake", intake.process, dead, broker),
                consumer,
                conn,
                broker,
            )
        finally:
            await conn.close()
            await consumer.stop()
            await broker.stop()
            await db.close()


async def publish(
    servers: str, value: bytes, key: bytes, headers: Sequence[tuple[str, bytes]]
) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        await producer.send_and_wait(REPORTS_SUBMITTED.name, value, key=key, headers=list(headers))
    finally:
        await producer.stop()


async def test_a_dead_letter_replayed_after_the_fix_has_one_effect(stack: Stack) -> None:
    marker = new_marker()
    email = f"teacher.{marker}@school.example"
    data = report(f"src-{marker}", "r1", reporter={"name": "A. Teacher", "email": email})
    raw = json.dumps(data).encode()
    await publish(stack.servers, raw, b"r1", [("traceparent", b"00-abc-def-01")])

    # The bad migration: organisation can no longer hold "Oakfield Primary School".
    await stack.conn.execute(
        "ALTER TABLE intake.reports ALTER COLUMN organisation TYPE varchar(10)"
    )
    assert len(await stack.consume()) == 1
    dead = await read_topic(stack.servers, DEAD_LETTERS["intake"].name)
    assert len(dead) == 1
    dlq_id = dict(dead[0].headers)["dlq_id"].decode()
    assert email.encode() not in dead[0].value  # intake's dead letters are redacted copies
    count = "SELECT count(*) FROM intake.reports WHERE source = $1"
    assert await stack.conn.fetchval(count, data["source"]) == 0

    code, out = await stack.helpline("dlq", "list")
    assert code == 0, out
    (line,) = [x for x in out.splitlines() if x.startswith(dlq_id)]
    assert f"from {REPORTS_SUBMITTED.name}/" in line
    assert "StringDataRightTruncationError" in line
    code, out = await stack.helpline("dlq", "show", dlq_id)
    assert code == 0, out
    assert "[redacted]" in out
    assert email not in out
    assert marker in out  # the rest of the payload is shown

    # The fix.
    await stack.conn.execute("ALTER TABLE intake.reports ALTER COLUMN organisation TYPE text")
    code, out = await stack.helpline("dlq", "replay", dlq_id, "--by", "tester")
    assert code == 0, out
    assert out.splitlines()[-1] == "1 replayed"
    replayed = await stack.consume()
    assert [r.value for r in replayed] == [raw]  # the original, read back from its source
    assert replayed[0].key == b"r1"
    assert dict(replayed[0].headers) == {
        "traceparent": b"00-abc-def-01",
        REPLAY_HEADER: dlq_id.encode(),
    }
    assert await stack.conn.fetchval(count, data["source"]) == 1

    code, out = await stack.helpline("dlq", "replay", dlq_id, "--by", "tester")
    assert code == 0, out
    assert "skipped: already replayed by tester" in out
    assert out.splitlines()[-1] == "1 skipped"
    assert await stack.consume() == []  # nothing was published
    code, out = await stack.helpline("dlq", "list", "--topic", DEAD_LETTERS["intake"].name)
    assert "[replayed by tester at " in next(x for x in out.splitlines() if x.startswith(dlq_id))

    code, out = await stack.helpline("dlq", "replay", dlq_id, "--by", "tester", "--force")
    assert code == 0, out
    assert len(await stack.consume()) == 1
    row = await stack.conn.fetchrow(
        "SELECT count(*) AS n, max(duplicates) AS dup FROM intake.reports WHERE source = $1",
        data["source"],
    )
    assert (row["n"], row["dup"]) == (1, 1)  # one case; the forced replay is a duplicate
    opened = await read_topic(
        stack.servers, CASES_OPENED.name, keep=lambda r: marker.encode() in r.value
    )
    assert len(opened) == 1

    replays = await stack.conn.fetch(
        "SELECT replayed_by, forced, published_at FROM operations.dlq_replays WHERE dlq_id = $1"
        " ORDER BY replay_id",
        dlq_id,
    )
    assert [(r["replayed_by"], r["forced"]) for r in replays] == [
        ("tester", False),
        ("tester", True),
    ]
    assert all(r["published_at"] is not None for r in replays)


async def test_a_refusal_is_replayed_from_intakes_table_when_its_source_is_gone(
    stack: Stack,
) -> None:
    marker = new_marker()
    email = f"head.{marker}@school.example"
    data = report(f"src-{marker}", "r2", reporter={"name": "B. Head", "email": email})
    del data["description"]
    raw = json.dumps(data).encode()
    # Consumed at a position the topic no longer holds (its retention has passed).
    await stack.intake.process([record(900_000, raw, key=b"r2")])
    (refused,) = await read_topic(
        stack.servers, REPORTS_REJECTED.name, keep=lambda r: marker.encode() in original(r)
    )
    rid = json.loads(refused.value)["event_id"]

    topic = ("--topic", REPORTS_REJECTED.name)
    code, out = await stack.helpline("dlq", "list", *topic)
    assert code == 0, out
    (line,) = [x for x in out.splitlines() if x.startswith(rid)]
    assert f"from {REPORTS_SUBMITTED.name}/0/900000" in line
    assert "description: missing" in line
    code, out = await stack.helpline("dlq", "show", rid, *topic)
    assert code == 0, out
    assert email not in out

    code, out = await stack.helpline("dlq", "replay", rid, *topic, "--dry-run")
    assert code == 0, out
    assert f"would replay: {len(raw)} bytes to {REPORTS_SUBMITTED.name}" in out
    assert await stack.consumer.getmany(timeout_ms=1000) == {}
    code, out = await stack.helpline("dlq", "replay", rid, *topic, "--by", "tester")
    assert code == 0, out
    replayed = await stack.consume()
    assert [(r.value, r.key) for r in replayed] == [(raw, b"r2")]  # every byte, from the table
    assert dict(replayed[0].headers) == {REPLAY_HEADER: rid.encode()}

    # Once `helpline intake purge` has cleared the bytes, there is nothing left to replay.
    await stack.conn.execute(
        "UPDATE intake.rejections SET original = NULL WHERE rejection_id = $1", uuid.UUID(rid)
    )
    code, out = await stack.helpline("dlq", "replay", rid, *topic, "--force")
    assert code == 1
    assert "failed: the original is gone" in out
    code, out = await stack.helpline("dlq", "replay", "no-such-id", *topic)
    assert code == 1
    assert "no-such-id: failed: no such letter" in out


async def test_a_refusal_is_replayed_from_its_source_while_the_topic_holds_it(
    stack: Stack,
) -> None:
    marker = new_marker()
    data = report(f"src-{marker}", "r3")
    del data["urls"]
    raw = json.dumps(data).encode()
    await publish(stack.servers, raw, b"r3", [("ce_id", marker.encode())])
    assert len(await stack.consume()) == 1  # refused: no URLs
    (refused,) = await read_topic(
        stack.servers, REPORTS_REJECTED.name, keep=lambda r: marker.encode() in original(r)
    )
    rid = json.loads(refused.value)["event_id"]
    await stack.conn.execute("UPDATE intake.rejections SET original = NULL")  # not needed

    code, out = await stack.helpline("dlq", "replay", rid, "--topic", REPORTS_REJECTED.name)
    assert code == 0, out
    replayed = await stack.consume()
    assert [(r.value, r.key) for r in replayed] == [(raw, b"r3")]
    assert dict(replayed[0].headers) == {"ce_id": marker.encode(), REPLAY_HEADER: rid.encode()}


async def test_replay_all_replays_each_letter_once_with_progress_and_a_summary(
    stack: Stack,
) -> None:
    marker = new_marker()
    triage = DeadLetters("triage", max_ratio=0.9, window=10)
    for offset in range(3):
        value = json.dumps({"case": f"{marker}-{offset}"}).encode()
        source = ConsumerRecord(
            CASES_OPENED.name, 0, 500 + offset, 1_700_000_000_000, 0, f"case-{offset}".encode(),
            value, None, 6, len(value), [("ce_id", f"{marker}-{offset}".encode())],
        )  # fmt: skip
        triage.add(source, "RuntimeError: a bug fixed since")
    assert await triage.flush(stack.broker) == 3
    topic = ("--topic", DEAD_LETTERS["triage"].name)

    code, out = await stack.helpline("dlq", "replay", "--all", *topic, "--dry-run")
    assert code == 0, out
    assert out.splitlines()[-1] == "3 would replay"
    code, out = await stack.helpline("dlq", "replay", "--all", *topic, "--by", "ops")
    assert code == 0, out
    assert out.splitlines()[-1] == "3 replayed"
    code, out = await stack.helpline("dlq", "replay", "--all", *topic, "--by", "ops")
    assert out.splitlines()[-1] == "3 skipped"
    replayed = await read_topic(
        stack.servers, CASES_OPENED.name, keep=lambda r: marker.encode() in r.value
    )
    assert sorted(r.key for r in replayed) == [b"case-0", b"case-1", b"case-2"]
    for r in replayed:
        headers = dict(r.headers)
        assert headers["ce_id"].decode().startswith(marker)  # consumers dedup on it
        assert not any(k.startswith("dlq_") for k in headers)
        assert REPLAY_HEADER in headers


def dead_record(headers: dict[str, str], value: bytes, offset: int = 3) -> Any:
    return ConsumerRecord(
        DEAD_LETTERS["triage"].name,
        0,
        offset,
        1_700_000_000_000,
        0,
        b"case-1",
        value,
        None,
        6,
        len(value),
        [(k, v.encode()) for k, v in headers.items()],
    )


def test_a_dead_letter_says_when_it_is_not_the_original() -> None:
    base = {
        "dlq_id": "d1",
        "dlq_error": "boom",
        "dlq_source_topic": "helpline.cases.opened",
        "dlq_source_partition": "2",
        "dlq_source_offset": "41",
        "dlq_source_timestamp": "1700",
        "ce_id": "e1",
    }
    whole = from_dead_letter(dead_record(base, b"{}"))
    assert whole.not_original == []
    assert (whole.origin, whole.source_timestamp_ms) == ("helpline.cases.opened/2/41", 1700)
    assert whole.original_headers() == [("ce_id", b"e1")]
    cut = from_dead_letter(dead_record({**base, "dlq_value_truncated": "900000"}, b"{"))
    assert cut.not_original == ["dlq_value_truncated (was 900000 bytes)"]
    redacted = from_dead_letter(dead_record({**base, "dlq_service": "intake"}, b"{}"))
    assert redacted.not_original == ["the value is a redacted copy"]
    long_header = from_dead_letter(dead_record({**base, "traceparent": "x" * 1024}, b"{}"))
    assert long_header.not_original == ["a header may be cut or was not UTF-8"]


def test_show_keeps_personal_data_off_the_screen() -> None:
    value = json.dumps(
        {"case_id": "c1", "reporter": {"email": "x@y.example"}, "note": "call 0207 946 0000"}
    ).encode()
    text = show_text(from_dead_letter(dead_record({"dlq_id": "d1", "from": "a@b.example"}, value)))
    assert "x@y.example" not in text
    assert "0207 946 0000" not in text
    assert "a@b.example" not in text
    assert '"case_id": "c1"' in text
    withheld = show_text(from_dead_letter(dead_record({"dlq_id": "d2"}, b"Jane Doe, 12 High St")))
    assert "Jane Doe" not in withheld
    assert "withheld" in withheld


def test_choose_replays_each_letter_once_and_names_the_unknown() -> None:
    a = from_dead_letter(dead_record({"dlq_id": "a"}, b"{}", 1))
    b = from_dead_letter(dead_record({"dlq_id": "b"}, b"{}", 2))
    a_again = from_dead_letter(dead_record({"dlq_id": "a"}, b"{}", 3))  # republished copy
    assert [x.id for x in choose([a, b, a_again], [], every=True)] == ["a", "b"]  # type: ignore[union-attr]
    assert choose([a, b], ["b", "zz", "b"], every=False) == [b, "zz"]


async def test_a_letter_refused_as_forged_is_not_replayed_unless_forced() -> None:
    """Metrics dead-letters an outcome not from the escalator; replaying it would publish the
    forgery again on a topic external systems read, so `replay` skips it unless forced."""
    headers = {
        "ce_source": "urn:attacker",
        "dlq_id": str(uuid.uuid4()),
        "dlq_service": "metrics",
        "dlq_error": "forged helpline.escalations.outcomes: ce_source 'urn:attacker' is not "
        "its registered producer (urn:helpline:escalator)",
        "dlq_source_topic": "helpline.escalations.outcomes",
        "dlq_source_partition": "0",
        "dlq_source_offset": "7",
    }
    letter = from_dead_letter(dead_record(headers, b'{"platform": "forged-platform"}'))
    settings = Settings()
    outcome, detail = await replay_one(settings, None, None, letter, by="t", force=False)
    assert outcome == "skipped"
    assert "not from its registered producer" in detail
    genuine = from_dead_letter(
        dead_record({**headers, "dlq_error": "invalid helpline.escalations.outcomes: x"}, b"{}")
    )
    assert (await replay_one(settings, None, None, genuine, by="t", force=False))[0] == (
        "would replay"
    )
    forced = await replay_one(settings, None, None, letter, by="t", force=True)
    assert forced[0] == "would replay"
