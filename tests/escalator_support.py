"""What the escalator's database-level tests share: a simulator that answers at once, an
emptied escalator schema, escalations written straight into it, and what the outbox and
the simulator recorded."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpline_shared.db import Database
from helpline_shared.events import EscalationActivityV1, EscalationOutcomeV1, utcnow
from helpline_shared.topics import ESCALATION_ACTIVITY, ESCALATION_OUTCOMES
from tests.conftest import opened_database
from tests.helpers import serve_simulator
from tests.infra import Infra


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
