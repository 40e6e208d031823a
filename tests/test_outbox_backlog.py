"""The outbox backlog the alert reads: `helpline_outbox_oldest_pending_seconds{service}` is
the age of the oldest unpublished row of that service, 0 once the relay published it, on
real PostgreSQL and the real broker."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.app import create_app as create_escalator
from helpline_shared.db import Database
from helpline_shared.kafka import OutgoingMessage, create_topics
from helpline_shared.observability import ServiceMetrics
from helpline_shared.outbox import Outbox
from helpline_shared.outbox_backlog import backlog_reader, oldest_pending_seconds
from helpline_shared.settings import Settings
from helpline_shared.topics import Topic
from tests.conftest import fresh_database, opened_database
from tests.infra import Infra


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_backlog") as database:
        yield database


async def scraped(observed: ServiceMetrics, service: str) -> float:
    _, app = observed.route()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
        text = (await client.get("/metrics")).text
    found = re.search(
        rf'^helpline_outbox_oldest_pending_seconds\{{service="{service}"\}} (\S+)$', text, re.M
    )
    assert found, text
    return float(found.group(1))


async def test_the_oldest_pending_row_ages_until_the_relay_publishes_it(
    db: Database, topics_settings: Settings
) -> None:
    topic = f"helpline.backlog-test.{uuid.uuid4().hex[:8]}"
    await create_topics(topics_settings, [Topic(topic, "any", (), (), None, partitions=1)])
    service, other = f"svc-{uuid.uuid4().hex[:6]}", f"svc-{uuid.uuid4().hex[:6]}"
    observed = ServiceMetrics(service)
    observed.outbox_backlog(backlog_reader(db, service))
    broker = KafkaBroker(topics_settings.kafka_bootstrap_servers)
    await broker.connect()
    try:
        outbox = Outbox(db, broker, service)
        assert await scraped(observed, service) == 0.0  # nothing pending

        async with db.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, [OutgoingMessage(topic, b"first", b"k")])
        # A row written ten minutes ago, as if the relay had been stuck since.
        await db.pool.execute(
            "UPDATE outbox SET created_at = now() - interval '600 seconds' WHERE service = $1",
            service,
        )
        async with db.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, [OutgoingMessage(topic, b"second", b"k")])
        # Another service's rows are not this one's backlog.
        async with db.pool.acquire() as conn, conn.transaction():
            await Outbox(db, broker, other).add(conn, [OutgoingMessage(topic, b"x", b"k")])

        age = await scraped(observed, service)
        print(f"oldest pending: {age:.1f} s")
        assert 600 <= age < 660
        assert await oldest_pending_seconds(db, other) < 60

        assert await outbox.relay_once() == 2
        assert await scraped(observed, service) == 0.0
        assert await oldest_pending_seconds(db, other) >= 0.0
    finally:
        await broker.stop()


async def test_an_unreachable_database_reads_as_unknown_not_as_no_backlog(infra: Infra) -> None:
    closed = Database(await fresh_database(infra, "helpline_backlog"))  # never opened
    assert math.isnan(await oldest_pending_seconds(closed, "escalator"))
    observed = ServiceMetrics("escalator")
    observed.outbox_backlog(backlog_reader(closed, "escalator"))
    assert math.isnan(await scraped(observed, "escalator"))


async def test_the_escalator_exports_its_outbox_backlog(topics_settings: Settings) -> None:
    """The escalator writes through an outbox: its /metrics has the gauge (unknown until
    its database pool opens)."""
    settings = topics_settings.model_copy(update={"database_url": "postgresql://unused/x"})
    transport = httpx.ASGITransport(app=create_escalator(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://escalator") as client:
        text = (await client.get("/metrics")).text
    assert 'helpline_outbox_oldest_pending_seconds{service="escalator"} NaN' in text
