"""Calm during outages: a consumer waiting on its database resumes as soon as the database
answers again (its dependencies are probed while it backs off) instead of sleeping out the
backoff, and so does the outbox relay. On the real broker and a PostgreSQL server of these
tests' own, stopped and started again mid-run; the delay from "database back" to "work
resumed" is printed and asserted only loosely (before the backoff in progress would have
run out)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from helpline_cli.infra import create_database
from helpline_intake.app import create_app
from helpline_shared.db import Database, migrate
from helpline_shared.kafka import OutgoingMessage, create_topics
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED, Topic
from tests.faults.harness import OwnPostgres
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served

# The runner's backoff (BatchRunner's defaults): 0.5 s doubled per consecutive failure.
BACKOFF_BASE_S, BACKOFF_MAX_S = 0.5, 30.0
FAILURES_BEFORE_RESTART = 5  # the failure whose backoff is then in progress: 8 s
FAILURES = re.compile(r'^helpline_consumer_batch_failures\{service="intake"\} (\S+)$', re.M)


def backoff_s(failures: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, failures - 1))


def report(source: str, report_id: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "source": source,
            "report_id": report_id,
            "reporter": {"name": "R", "email": "r@school.example"},
            "description": "A fake account of our head teacher.",
            "urls": ["https://www.tiktok.com/@fake_head/video/7301234567890123456"],
        }
    ).encode()


async def received_at(database_url: str, source: str, report_id: str) -> datetime | None:
    """When intake's batch that stored the report began, if it is stored (None if not, or
    while the database cannot be asked)."""
    try:
        conn = await asyncpg.connect(database_url, timeout=2)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    try:
        value = await conn.fetchval(
            "SELECT received_at FROM intake.reports WHERE source = $1 AND report_id = $2",
            source,
            report_id,
        )
        return value if isinstance(value, datetime) else None
    finally:
        await conn.close()


async def stored(database_url: str, source: str, report_id: str, timeout_s: float) -> datetime:
    deadline = time.monotonic() + timeout_s
    while (at := await received_at(database_url, source, report_id)) is None:
        assert time.monotonic() < deadline, f"{report_id} was never stored"
        await asyncio.sleep(0.1)
    return at


async def batch_failures(client: httpx.AsyncClient) -> int:
    found = FAILURES.search((await client.get("/metrics")).text)
    return int(float(found.group(1))) if found else 0


@pytest.fixture(scope="module")
async def postgres(tmp_dir: Path) -> AsyncIterator[OwnPostgres]:
    """A PostgreSQL server of this module's own, which its tests stop and start."""
    server = await asyncio.to_thread(OwnPostgres, tmp_dir / f"resume-pg-{uuid.uuid4().hex[:6]}")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def started(postgres: OwnPostgres) -> None:
    """Start the server unless it is running already."""
    with contextlib.suppress(Exception):
        postgres.start()


async def own_database(postgres: OwnPostgres) -> str:
    url = await create_database(postgres.url, f"helpline_resume_{uuid.uuid4().hex[:8]}")
    await migrate(url)
    return url


async def test_a_consumer_resumes_as_soon_as_its_database_is_back(
    infra: Infra, tmp_dir: Path, postgres: OwnPostgres
) -> None:
    source = f"resume-{uuid.uuid4().hex[:8]}"
    database_url = await own_database(postgres)
    try:
        with dedicated_broker(infra, tmp_dir) as servers:
            settings = Settings(kafka_bootstrap_servers=servers, database_url=database_url)
            await create_topics(settings)
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                async with (
                    served(create_app(settings)) as url,
                    httpx.AsyncClient(base_url=url, timeout=5) as client,
                ):
                    await producer.send_and_wait(REPORTS_SUBMITTED.name, report(source, "before"))
                    await stored(database_url, source, "before", 60)

                    await asyncio.to_thread(postgres.stop)
                    await producer.send_and_wait(REPORTS_SUBMITTED.name, report(source, "during"))
                    # Wait for the failure whose backoff (8 s) is long enough to tell apart
                    # sleeping it out from resuming at once.
                    deadline = time.monotonic() + 90
                    while (failures := await batch_failures(client)) < FAILURES_BEFORE_RESTART:
                        assert time.monotonic() < deadline, f"only {failures} failures"
                        await asyncio.sleep(0.1)
                    # The backoff began at most one poll ago; slept out it would end here:
                    backoff_ends = datetime.now(UTC).timestamp() - 0.2 + backoff_s(failures)
                    await asyncio.to_thread(postgres.start)
                    back = await server_started(database_url)
                    resumed = (await stored(database_url, source, "during", 60)).timestamp()
            finally:
                await producer.stop()
    finally:
        await asyncio.to_thread(started, postgres)  # whatever happened, for the next test

    print(
        f"\ndatabase started -> work resumed: {resumed - back:.2f} s "
        f"(the backoff in progress, {backoff_s(failures):.0f} s after failure {failures}, "
        f"would have run until {backoff_ends - back:+.2f} s)"
    )
    assert resumed < backoff_ends, "the consumer slept out its backoff"


# The outbox relay's pause after its k-th failure in a row (WorkLoop): 0.5 s * 2**k. With the
# database down from the start, its attempts cannot come sooner than 0, 1, 3, 7, 15 s.
RELAY_ATTEMPTS_S = (0.0, 1.0, 3.0, 7.0, 15.0, 31.0)
RELAY_DOWN_S = 9.0  # restarted after the attempt at 7 s: the next would be at 15 s


async def test_the_outbox_relay_resumes_as_soon_as_its_database_is_back(
    topics_settings: Settings, postgres: OwnPostgres
) -> None:
    topic = f"helpline.resume-test.{uuid.uuid4().hex[:8]}"
    await create_topics(topics_settings, [Topic(topic, "any", (), (), None, partitions=1)])
    service = f"resume-{uuid.uuid4().hex[:6]}"
    database_url = await own_database(postgres)
    db = Database(database_url)
    await db.open()
    broker = KafkaBroker(topics_settings.kafka_bootstrap_servers)
    await broker.connect()
    outbox = Outbox(db, broker, service)
    try:
        async with db.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, [OutgoingMessage(topic, b"committed before", b"k")])
        await asyncio.to_thread(postgres.stop)
        outbox.start()  # its first attempt fails at once: the relay backs off from here
        relay_started = time.time()
        await asyncio.sleep(RELAY_DOWN_S)
        await asyncio.to_thread(postgres.start)
        deadline = time.monotonic() + 60
        while await pending(db, service) != 0:
            assert time.monotonic() < deadline, "the outbox was never relayed"
            await asyncio.sleep(0.1)
        resumed = time.time()  # at most a poll after it was relayed
        back = await server_started(database_url)
    finally:
        await asyncio.to_thread(started, postgres)
        await outbox.stop(5.0)
        await broker.stop()
        await db.close()
    [record] = await read_topic(topics_settings.kafka_bootstrap_servers, topic, expected=1)
    assert record.value == b"committed before"

    slept_out = relay_started + min(t for t in RELAY_ATTEMPTS_S if t > back - relay_started)
    print(
        f"\ndatabase started -> outbox relayed: at most {resumed - back:.2f} s "
        f"(sleeping out its backoff, the next attempt would come at {slept_out - back:+.2f} s)"
    )
    assert resumed < slept_out, "the relay slept out its backoff"


async def server_started(database_url: str) -> float:
    """When the server last started (its clock is this machine's), as a timestamp."""
    conn = await asyncpg.connect(database_url)
    try:
        return float((await conn.fetchval("SELECT pg_postmaster_start_time()")).timestamp())
    finally:
        await conn.close()


async def pending(db: Database, service: str) -> int | None:
    """Rows of `service` not relayed yet (None while the database cannot be asked)."""
    try:
        count = await db.pool.fetchval("SELECT count(*) FROM outbox WHERE service = $1", service)
        return int(count)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
