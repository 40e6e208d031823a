"""Dead letters: an unprocessable event goes to the service's DLQ with its original bytes,
the error (without the input's values) and its origin; a flood trips the limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_shared.consumer import (
    BatchRunner,
    ConsumerHealth,
    DeadLetterLimitExceededError,
    DeadLetters,
)
from helpline_shared.db import Database
from helpline_shared.events import CaseOpenedV1, derive_id, utcnow
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, DEAD_LETTERS
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage
from tests.helpers import read_topic
from tests.infra import Infra


@pytest.fixture
async def broker(infra: Infra, topics_settings: Settings) -> AsyncIterator[KafkaBroker]:
    b = KafkaBroker(infra.bootstrap_servers)
    await b.connect()
    yield b
    await b.stop()


def record(offset: int, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        "helpline.cases.opened",
        1,
        offset,
        0,
        0,
        b"key-1",
        value,
        None,
        5,
        len(value),
        [("ce_id", b"abc")],
    )


async def test_invalid_event_is_dead_lettered_with_origin_and_no_input_values(
    broker: KafkaBroker, infra: Infra, unit_db_url: str
) -> None:
    marker = uuid.uuid4().hex
    secret = f"Secret Person {marker}"
    bad = f'{{"schema_version": 1, "description": "{secret}"}}'.encode()
    case_id = uuid.uuid4()
    good = (
        CaseOpenedV1(
            event_id=derive_id("case.opened", case_id),
            case_id=case_id,
            source=marker,
            report_id="1",
            received_at=utcnow(),
            description=f"bullying {marker}",
            urls=["https://www.tiktok.com/@a/video/1"],
        )
        .model_dump_json()
        .encode()
    )
    dead_letters = DeadLetters("triage", max_ratio=0.9, window=10)
    db = Database(unit_db_url)
    await db.open()
    try:
        triage = Triage(db, broker, dead_letters, RuleSet.load())
        await BatchRunner("triage", triage.process, dead_letters, broker).run(
            [record(7, bad), record(8, good)]
        )
    finally:
        await db.close()

    dead = await read_topic(
        infra.bootstrap_servers,
        DEAD_LETTERS["triage"].name,
        keep=lambda r: marker.encode() in r.value,
    )
    assert len(dead) == 1
    assert dead[0].value == bad
    assert dead[0].key == b"key-1"
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["dlq_source_topic"] == "helpline.cases.opened"
    assert (headers["dlq_source_partition"], headers["dlq_source_offset"]) == ("1", "7")
    assert headers["ce_id"] == "abc"
    assert "case_id: Field required" in headers["dlq_error"]
    assert secret not in headers["dlq_error"]
    triaged = await read_topic(
        infra.bootstrap_servers, CASES_TRIAGED.name, keep=lambda r: str(case_id).encode() in r.value
    )
    assert len(triaged) == 1


def batch(start: int, flags: str) -> tuple[list[ConsumerRecord[bytes, bytes]], list[Any]]:
    """Records at offsets from `start`; `flags` marks each good (`.`) or refused (`x`)."""
    records = [record(start + i, b"{}") for i in range(len(flags))]
    return records, [r for r, f in zip(records, flags, strict=True) if f == "x"]


def test_the_ratio_follows_the_messages_in_order() -> None:
    # 20% refused at the end of a batch of 500 with the defaults (window 200, limit 50%)
    # is 100 of the last 200: at the limit, not over it.
    dead = DeadLetters("triage", max_ratio=0.5, window=200)
    dead.admit(*batch(0, "." * 400 + "x" * 100))
    assert not dead.tripped


def test_limit_trips_only_on_a_full_window_over_the_ratio() -> None:
    dead = DeadLetters("triage", max_ratio=0.5, window=10)
    dead.admit(*batch(0, "xxxx"))  # window not full yet
    dead.admit(*batch(4, "...."))
    with pytest.raises(DeadLetterLimitExceededError):
        dead.admit(*batch(8, "xxxx"))  # 6 of the last 10
    assert dead.tripped
    assert dead.trips == 1


def test_a_redelivered_batch_is_not_counted_twice() -> None:
    dead = DeadLetters("triage", max_ratio=0.5, window=10)
    first = batch(0, "xxxx......")
    for _ in range(5):
        dead.admit(*first)  # redelivered: the same positions count once
    dead.admit(*batch(10, "xxx......."))
    assert not dead.tripped


def test_a_tripped_bound_holds_then_recovers_once_the_ratio_falls() -> None:
    now = [0.0]
    dead = DeadLetters("triage", max_ratio=0.5, window=10, hold_s=60, clock=lambda: now[0])
    flood = batch(0, "x" * 10)
    with pytest.raises(DeadLetterLimitExceededError):
        dead.admit(*flood)
    now[0] = 30.0
    with pytest.raises(DeadLetterLimitExceededError):
        dead.admit(*flood)  # still held
    assert dead.tripped
    now[0] = 61.0
    dead.admit(*flood)  # released after its hold: dead-lettered, window starts afresh
    dead.admit(*batch(10, "." * 10))
    assert not dead.tripped
    assert dead.trips == 1


def test_a_few_dead_letters_in_a_healthy_stream_are_fine() -> None:
    dead = DeadLetters("triage", max_ratio=0.5, window=10)
    for i in range(20):
        dead.admit(*batch(i * 10, "x........."))
    assert not dead.tripped


def test_a_dead_letter_is_bounded_in_size_and_says_so() -> None:
    dead = DeadLetters("intake", max_ratio=0.5, window=10)
    huge = ConsumerRecord(
        "helpline.reports.submitted", 0, 1, 0, 0, b"k" * 600_000, b"v" * 2_000_000,
        None, 600_000, 2_000_000, [("h", b"x" * 5000)] * 100,
    )  # fmt: skip
    message = dead.message(huge, "too big")
    assert len(message.key or b"") <= 1024
    assert len(message.value) <= 512_000
    assert message.headers["dlq_key_truncated"] == "600000"
    assert message.headers["dlq_value_truncated"] == "2000000"
    assert all(len(v) <= 1024 for v in message.headers.values())


async def flaky_runner(
    broker: KafkaBroker, fail: Callable[[ConsumerRecord[bytes, bytes]], BaseException | None]
) -> tuple[BatchRunner, list[int], DeadLetters]:
    done: list[int] = []
    dead = DeadLetters("triage", max_ratio=0.9, window=10)

    async def process(records: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        dead.admit(records, [])
        for r in records:
            exc = fail(r)
            if exc is not None:
                raise exc
        done.extend(r.offset for r in records)

    runner = BatchRunner("triage", process, dead, broker, backoff_base_s=0.01, backoff_max_s=0.01)
    return runner, done, dead


async def test_an_error_of_one_message_is_isolated_and_dead_lettered_alone(
    broker: KafkaBroker, infra: Infra
) -> None:
    marker = uuid.uuid4().hex.encode()
    records = [record(100 + i, marker) for i in range(7)]
    runner, done, dead = await flaky_runner(
        broker, lambda r: RuntimeError("boom") if r.offset == 104 else None
    )
    for _ in range(3):  # retried as a whole first
        with pytest.raises(RuntimeError):
            await runner.run(records)
    await runner.run(records)  # then split until the failing message is alone
    assert sorted(set(done)) == [100, 101, 102, 103, 105, 106]
    found = await read_topic(
        infra.bootstrap_servers, DEAD_LETTERS["triage"].name, keep=lambda r: r.value == marker
    )
    assert [int(dict(r.headers)["dlq_source_offset"]) for r in found] == [104]
    assert b"RuntimeError" in dict(found[0].headers)["dlq_error"]
    assert dead.total == 1


async def test_an_outage_is_retried_without_dead_lettering_anything(broker: KafkaBroker) -> None:
    marker = uuid.uuid4().hex.encode()
    records = [record(200 + i, marker) for i in range(3)]
    outage = [True]
    runner, done, dead = await flaky_runner(
        broker, lambda r: ConnectionRefusedError("database down") if outage[0] else None
    )
    runner.health = ConsumerHealth(stuck_after_s=0.05)
    await runner.health.on_partitions_assigned([])
    for _ in range(6):
        with pytest.raises(ConnectionRefusedError):
            await runner.run(records)
    assert runner.health.stuck
    assert not runner.health.ready  # a consumer that cannot progress is not ready
    outage[0] = False
    await runner.run(records)
    assert done == [200, 201, 202]
    assert dead.total == 0
    assert runner.health.ready


async def test_a_deploy_that_fails_every_message_trips_the_bound(broker: KafkaBroker) -> None:
    records = [record(300 + i, b"{}") for i in range(40)]
    runner, _, dead = await flaky_runner(broker, lambda r: RuntimeError("bad deploy"))
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await runner.run(records)
    with pytest.raises(DeadLetterLimitExceededError):
        await runner.run(records)
    assert dead.tripped
    assert dead.total < 10  # stopped before dead-lettering everything


async def test_after_an_outage_the_consumer_resumes_when_the_dependency_answers(
    broker: KafkaBroker,
) -> None:
    records = [record(400, b"{}")]
    down = [True]
    dead = DeadLetters("triage", max_ratio=0.9, window=10)
    done: list[int] = []

    async def process(batch: Sequence[ConsumerRecord[bytes, bytes]]) -> None:
        if down[0]:
            raise ConnectionRefusedError("database down")
        done.extend(r.offset for r in batch)

    async def database_answers() -> bool:
        return not down[0]

    # A backoff of ten minutes: only probing the dependency can end the wait in time.
    runner = BatchRunner(
        "triage", process, dead, broker, probes=[database_answers], backoff_base_s=600
    )
    attempt = asyncio.create_task(runner.run(records))
    await asyncio.sleep(0.5)
    assert not attempt.done()
    down[0] = False
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(attempt, 10)  # the failed batch returns for redelivery
    await runner.run(records)
    assert done == [400]
