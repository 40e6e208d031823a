"""What the escalator's tests share: a simulator that answers at once, an emptied
escalator schema, escalations written straight into it, and what the outbox and the
simulator recorded; for end-to-end tests, the escalator as deployed (`escalator_stack`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from helpline_escalator.app import create_app
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    derive_id,
    utcnow,
)
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_ACTIVITY, ESCALATION_OUTCOMES
from tests.conftest import fresh_database, opened_database
from tests.helpers import read_topic, serve_simulator
from tests.infra import Infra, dedicated_broker
from tests.served import served


def module_simulator() -> Any:
    """A fixture: the simulator served for the test module, its base URL. Assign it to
    `simulator` in the module."""

    @pytest.fixture(scope="module")
    async def simulator() -> AsyncIterator[str]:
        async with serve_simulator() as url:
            yield url

    return simulator


def module_database(prefix: str) -> Any:
    """A fixture: a fresh, migrated database named after `prefix`, open for the test
    module. Assign it to `db` in the module."""

    @pytest.fixture(scope="module")
    async def db(infra: Infra) -> AsyncIterator[Database]:
        async with opened_database(infra, prefix) as database:
            yield database

    return db


# The simulator's behaviour with nothing in the way: no latency, errors, rate limits,
# lost replies or late storage, decisions at once. Reset keeps the behaviour, so each
# test sets all of it again.
QUIET: dict[str, Any] = {
    "latency_ms": 0,
    "error_rate": 0,
    "rate_limit_rate": 0,
    "decision_delay_ms": 0,
    "status_override": "",
    "lost_reply_rate": 0,
    "store_delay_ms": 0,
}


@contextlib.asynccontextmanager
async def quiet_simulator(simulator: str, **changes: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to the simulator, its notices and counts forgotten and its behaviour
    `QUIET` with `changes` on top."""
    async with aiohttp.ClientSession() as session:
        await session.post(f"{simulator}/_sim/reset")
        async with session.post(f"{simulator}/_sim/config", json={**QUIET, **changes}) as r:
            assert r.status == 200, await r.text()
        yield session


def triaged(
    url: str,
    platform: str = "tiktok",
    *,
    route: str = "platform",
    urgency: str = "normal",
    harm_types: Sequence[str] = ("bullying_harassment",),
    rules_fired: Sequence[str] = (),
    due_in_s: float | None = None,
) -> CaseTriagedV1:
    """A case triaged just now with the one URL `url` of `platform`, on `route`; its
    decision due in `due_in_s` when that is given."""
    case_id = uuid.uuid4()
    now = utcnow()
    return CaseTriagedV1.model_validate(
        {
            "event_id": derive_id("triaged", case_id),
            "case_id": case_id,
            "received_at": now,
            "triaged_at": now,
            "harm_types": list(harm_types),
            "urgency": urgency,
            "route": route,
            "rules_fired": list(rules_fired),
            "decision_due_at": None if due_in_s is None else now + timedelta(seconds=due_in_s),
            "urls": [
                {
                    "url_id": derive_id("url", case_id, url),
                    "url": url,
                    "normalized_url": url,
                    "platform": platform,
                    "route": route,
                }
            ],
        }
    )


async def clear_escalator(db: Database) -> None:
    """Every escalation, attempt and queued event gone."""
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")


async def insert_escalation(db: Database, row: dict[str, Any], cases: int = 1) -> uuid.UUID:
    """Write the escalation `row` as it stands and link it to `cases` cases (the first is
    `row["case_id"]`), each with its own URL id; its escalation id."""
    cols = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await db.pool.execute(
        f"INSERT INTO escalator.escalations ({cols}) VALUES ({params})", *row.values()
    )
    for n in range(cases):
        await db.pool.execute(
            """INSERT INTO escalator.escalation_cases
                   (escalation_id, case_id, url_id, url, harm_types, urgency, received_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            row["escalation_id"],
            row["case_id"] if n == 0 else uuid.uuid4(),
            uuid.uuid4(),
            row["url"],
            row["harm_types"],
            row["urgency"],
            row["received_at"],
        )
    eid = row["escalation_id"]
    assert isinstance(eid, uuid.UUID)
    return eid


async def add_escalation(db: Database, **overrides: Any) -> uuid.UUID:
    """A queued TikTok escalation of one case, unclaimed and never attempted."""
    eid = uuid.uuid4()
    row = {
        "escalation_id": eid,
        "case_id": uuid.uuid4(),
        "url": f"https://tiktok.com/@x/{eid}",
        "normalized_url": f"https://tiktok.com/@x/{eid}",
        "platform": "tiktok",
        "route": "platform",
        "harm_types": ["bullying_harassment"],
        "urgency": "normal",
        "received_at": utcnow(),
        "state": "queued",
        "attempts": 0,
        "claimed_at": None,
        **overrides,
    }
    return await insert_escalation(db, row)


async def escalation(db: Database, eid: uuid.UUID) -> Any:
    return await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
    )


async def outcomes(db: Database) -> list[EscalationOutcomeV1]:
    """The outcome events queued in the outbox, in order."""
    rows = await db.pool.fetch(
        "SELECT value FROM outbox WHERE topic = $1 ORDER BY seq", ESCALATION_OUTCOMES.name
    )
    return [EscalationOutcomeV1.model_validate_json(r["value"]) for r in rows]


async def outbox_states(db: Database) -> list[str]:
    """The state of each outcome event queued in the outbox, in order."""
    rows = await db.pool.fetch(
        "SELECT headers FROM outbox WHERE topic = $1 ORDER BY seq", ESCALATION_OUTCOMES.name
    )
    return [r["headers"]["ce_type"].split(".")[2] for r in rows]


async def activity(db: Database) -> list[EscalationActivityV1]:
    """The activity events queued in the outbox, in order."""
    rows = await db.pool.fetch(
        "SELECT value FROM outbox WHERE topic = $1 ORDER BY seq", ESCALATION_ACTIVITY.name
    )
    return [EscalationActivityV1.model_validate_json(r["value"]) for r in rows]


async def sim_stats(http: aiohttp.ClientSession, simulator: str) -> dict[str, Any]:
    async with http.get(f"{simulator}/_sim/stats") as r:
        return dict(await r.json())


async def sim_activity(http: aiohttp.ClientSession, simulator: str, slug: str) -> dict[str, Any]:
    """What the simulator counted for the platform `slug`."""
    return dict((await sim_stats(http, simulator))["platform_activity"][slug])


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60) -> Any:
    """`check`'s first true answer, asked every 0.1 s; the test fails if none comes within
    `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        if value := await check():
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.1)


@dataclass
class Stack:
    """The escalator as deployed, with its database, a producer and the simulator."""

    settings: Settings
    db: Database
    producer: AIOKafkaProducer
    simulator: str

    @property
    def servers(self) -> str:
        return self.settings.kafka_bootstrap_servers

    async def publish(self, topic: str, key: uuid.UUID, event: BaseModel | bytes) -> None:
        value = event if isinstance(event, bytes) else event.model_dump_json().encode()
        await self.producer.send_and_wait(topic, value, key=str(key).encode())

    async def simulate(self, changes: dict[str, Any]) -> None:
        """Change the simulator's behaviour by `changes`."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.simulator}/_sim/config", json=changes) as r,
        ):
            assert r.status == 200, await r.text()

    async def activity(self, slug: str) -> dict[str, Any]:
        """What the simulator counted for the platform `slug`."""
        async with aiohttp.ClientSession() as http:
            return await sim_activity(http, self.simulator, slug)

    async def outcomes(self, case_ids: set[uuid.UUID]) -> list[EscalationOutcomeV1]:
        """Every outcome on the broker for the cases `case_ids`."""
        records = await read_topic(
            self.servers,
            ESCALATION_OUTCOMES.name,
            keep=lambda r: r.key is not None and uuid.UUID(r.key.decode()) in case_ids,
        )
        return [EscalationOutcomeV1.model_validate_json(r.value) for r in records]


@contextlib.asynccontextmanager
async def escalator_stack(
    infra: Infra,
    tmp_dir: Path,
    *,
    database: str = "helpline_esc_commands",
    simulator: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Stack]:
    """The escalator's app served on a dedicated broker, a fresh database named after
    `database` and the simulator (given no latency and the behaviour `simulator` before
    the escalator starts, if there is one), with a producer to publish to it."""
    async with serve_simulator() as sim:
        with dedicated_broker(infra, tmp_dir) as servers:
            database_url = await fresh_database(infra, database)
            config = Settings(
                kafka_bootstrap_servers=servers,
                database_url=database_url,
                platform_base_url=sim,
                escalation_retry_base_s=0.05,
                escalation_status_interval_s=0.2,
                escalation_poll_interval_s=0.2,
                **settings,
            )
            await create_topics(config)
            db = Database(database_url)
            await db.open()
            producer = AIOKafkaProducer(bootstrap_servers=servers)
            await producer.start()
            stack = Stack(config, db, producer, sim)
            try:
                if simulator is not None:
                    await stack.simulate({"latency_ms": 0, **simulator})
                async with served(create_app(config)):
                    yield stack
            finally:
                await producer.stop()
                await db.close()
