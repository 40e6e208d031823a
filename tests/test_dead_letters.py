"""Dead letters: an unprocessable event goes to the service's DLQ with its original bytes,
the error (without the input's values) and its origin; a flood trips the limit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_shared.consumer import DeadLetterLimitExceededError, DeadLetters
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
    broker: KafkaBroker, infra: Infra
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
    triage = Triage(broker, DeadLetters("triage", max_ratio=0.9, window=10), RuleSet.load())
    await triage.process([record(7, bad), record(8, good)])

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


def test_limit_trips_only_on_a_full_window_over_the_ratio() -> None:
    dead = DeadLetters("triage", max_ratio=0.5, window=10)
    dead.check(processed=4, dead=4)  # window not full yet
    dead.check(processed=4, dead=0)
    with pytest.raises(DeadLetterLimitExceededError):
        dead.check(processed=4, dead=4)  # 6 of the last 10
    assert dead.tripped


def test_a_few_dead_letters_in_a_healthy_stream_are_fine() -> None:
    dead = DeadLetters("triage", max_ratio=0.5, window=10)
    for _ in range(20):
        dead.check(processed=10, dead=1)
    assert dead.total == 20
    assert not dead.tripped
