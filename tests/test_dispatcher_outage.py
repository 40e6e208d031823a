"""Calm during outages, for the escalator's platform workers: after a database outage a
worker's loop resumes as soon as the database answers again (it probes the database while
it backs off) instead of sleeping out its backoff. On a PostgreSQL server of this test's
own, stopped and started again mid-run (after the worker's fourth failed attempt), against
the real simulator; the delay from "database back" to "escalation decided" is printed and
asserted only loosely (before the backoff in progress would have run out)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.dispatcher import PlatformWorker
from helpline_shared.db import Database
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from tests.faults.harness import OwnPostgres
from tests.helpers import serve_simulator
from tests.test_dispatcher import add_escalation
from tests.test_outage_resume import own_database, server_started, started

# The WorkLoop's pause after its k-th failure in a row: 0.5 s * 2**k, capped at 30 s.
FAILURES_BEFORE_RESTART = 4  # the pause then in progress: 8 s


def pause_s(failures: int) -> float:
    return min(30.0, 0.5 * 2**failures)


class WatchedDatabase(Database):
    """The real database, noting when the worker reaches for its pool (once per step
    while nothing is parked): so the test knows when each attempt was made."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.reached: list[float] = []

    @property
    def pool(self) -> asyncpg.Pool:
        self.reached.append(time.time())
        return super().pool


@pytest.fixture(scope="module")
async def postgres(tmp_dir: Path) -> AsyncIterator[OwnPostgres]:
    """A PostgreSQL server of this module's own, which its test stops and starts."""
    server = await asyncio.to_thread(OwnPostgres, tmp_dir / f"worker-pg-{uuid.uuid4().hex[:6]}")
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def state_of(db: Database, eid: uuid.UUID) -> str | None:
    """The escalation's state (None while the database cannot be asked)."""
    try:
        state = await db.pool.fetchval(
            "SELECT state FROM escalator.escalations WHERE escalation_id = $1", eid
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return None
    return str(state)


async def test_a_platform_worker_resumes_as_soon_as_its_database_is_back(
    postgres: OwnPostgres,
) -> None:
    database_url = await own_database(postgres)
    db = WatchedDatabase(database_url)
    await db.open()
    settings = Settings(
        escalation_loops_per_platform=1,
        escalation_poll_interval_s=0.2,
        escalation_claim_lease_s=30,
    )
    async with serve_simulator() as simulator, aiohttp.ClientSession() as http:
        worker = PlatformWorker(
            TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "escalator"), settings
        )
        try:
            eid = await add_escalation(db)
            await asyncio.to_thread(postgres.stop)
            db.reached.clear()
            worker.start()  # its steps fail at once: the loop backs off, longer each time
            deadline = time.monotonic() + 60
            while len(db.reached) < FAILURES_BEFORE_RESTART:
                assert time.monotonic() < deadline, f"only {len(db.reached)} attempts"
                await asyncio.sleep(0.05)
            # Slept out, the pause after this failure would end no sooner than this:
            slept_out = db.reached[FAILURES_BEFORE_RESTART - 1] + pause_s(FAILURES_BEFORE_RESTART)
            await asyncio.to_thread(postgres.start)
            deadline = time.monotonic() + 60
            while await state_of(db, eid) != "decided":
                assert time.monotonic() < deadline, "the escalation was never sent"
                await asyncio.sleep(0.1)
            resumed = time.time()  # at most a poll after it was decided
            back = await server_started(database_url)
        finally:
            await asyncio.to_thread(started, postgres)
            await worker.stop(5.0)
            await db.close()

    print(
        f"\ndatabase started -> escalation decided: at most {resumed - back:.2f} s "
        f"(sleeping out its backoff, the next attempt would come at {slept_out - back:+.2f} s)"
    )
    assert resumed < slept_out, "the worker slept out its backoff"
