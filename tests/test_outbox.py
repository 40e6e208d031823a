"""The outbox on real PostgreSQL and the real broker: one key's events are published in the
order their transactions committed, and a stop publishes everything already committed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from faststream.kafka import KafkaBroker

from helpline_shared.db import Database
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_OUTCOMES
from tests.conftest import opened_database
from tests.helpers import read_topic
from tests.infra import Infra

TOPIC = ESCALATION_OUTCOMES.name


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_outbox") as database:
        yield database


@pytest.fixture
async def broker(topics_settings: Settings) -> AsyncIterator[KafkaBroker]:
    b = KafkaBroker(topics_settings.kafka_bootstrap_servers)
    await b.connect()
    yield b
    await b.stop()


def message(key: bytes, value: str) -> OutgoingMessage:
    return OutgoingMessage(TOPIC, value.encode(), key, {"ce_id": str(uuid.uuid4())})


async def published(servers: str, key: bytes, expected: int) -> list[str]:
    records = await read_topic(servers, TOPIC, keep=lambda r: r.key == key, expected=expected)
    return [r.value.decode() for r in records]


async def test_one_keys_events_are_published_in_commit_order(
    db: Database, broker: KafkaBroker, topics_settings: Settings
) -> None:
    """Hole 15: rows went out in insert (`seq`) order, so two transactions writing one key
    that committed in the other order were published in the wrong one."""
    outbox = Outbox(db, broker, f"test-{uuid.uuid4().hex[:8]}")
    key = uuid.uuid4().hex.encode()
    committed: list[str] = []

    async def write(value: str, hold: asyncio.Event | None) -> None:
        async with db.pool.acquire() as conn:
            async with conn.transaction():
                await outbox.add(conn, [message(key, value)])
                if hold is not None:
                    await hold.wait()
            committed.append(value)

    release_first = asyncio.Event()
    first = asyncio.create_task(write("first", release_first))
    await asyncio.sleep(0.2)  # "first" has inserted and holds its transaction open
    second = asyncio.create_task(write("second", None))
    await asyncio.sleep(0.3)  # "second" commits now unless it has to wait for "first"
    release_first.set()
    await asyncio.gather(first, second)
    while await outbox.relay_once():
        pass
    assert await published(topics_settings.kafka_bootstrap_servers, key, 2) == committed


async def test_a_stop_publishes_everything_already_committed(
    db: Database, broker: KafkaBroker, topics_settings: Settings
) -> None:
    """Hole 15: a stop relayed one last batch only; the rest waited for the next start."""
    service = f"test-{uuid.uuid4().hex[:8]}"
    outbox = Outbox(db, broker, service, batch_size=10)
    key = uuid.uuid4().hex.encode()
    values = [f"event-{n:02d}" for n in range(25)]
    async with db.pool.acquire() as conn, conn.transaction():
        await outbox.add(conn, [message(key, v) for v in values])
    await outbox.stop(5.0)
    assert await db.pool.fetchval("SELECT count(*) FROM outbox WHERE service = $1", service) == 0
    assert await published(topics_settings.kafka_bootstrap_servers, key, 25) == values
