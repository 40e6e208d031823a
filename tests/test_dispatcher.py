"""The escalator's platform worker on real PostgreSQL against the real simulator:
attempts are recorded before calls, interrupted calls are reconciled by lookup and never
blindly re-sent, failures retry with backoff and end in `failed` after the last attempt."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.adapters.base import RetryableError
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.dispatcher import PlatformWorker, notice_for
from helpline_shared.db import Database
from helpline_shared.events import utcnow
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_simulator.credentials import dev_credential, expected_headers
from helpline_simulator.platforms import PLATFORMS
from tests.escalator_support import (
    add_escalation,
    clear_escalator,
    escalation,
    module_database,
    module_simulator,
    outbox_states,
    quiet_simulator,
    sim_stats,
)

simulator = module_simulator()
db = module_database("helpline_dispatch")


@pytest.fixture
async def http(simulator: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with quiet_simulator(simulator) as session:
        yield session


@pytest.fixture
async def worker(db: Database, simulator: str, http: aiohttp.ClientSession) -> PlatformWorker:
    await clear_escalator(db)
    settings = Settings(
        escalation_retry_base_s=0.05, escalation_max_attempts=3, escalation_claim_lease_s=30
    )
    outbox = Outbox(db, KafkaBroker(), "escalator")
    return PlatformWorker(TikTokAdapter(http, simulator), db, outbox, settings)


async def test_submit_records_the_attempt_and_the_decision(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await add_escalation(db)
    assert await worker.step() == 1
    row = await escalation(db, eid)
    assert row["state"] == "decided"
    assert row["attempts"] == 1
    assert row["platform_reference"].startswith("tiktok-")
    attempts = await db.pool.fetch("SELECT * FROM escalator.attempts")
    assert [(a["kind"], a["result"]) for a in attempts] == [("submit", "ok")]
    assert (await sim_stats(http, simulator))["submissions"] == 1
    assert await outbox_states(db) == ["decided"]
    assert await worker.step() == 0  # nothing more to do: decided is final


async def test_pending_decision_is_chased_until_decided(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    await http.post(f"{simulator}/_sim/config", json={"decision_delay_ms": 50})
    eid = await add_escalation(db)
    await worker.step()
    assert (await escalation(db, eid))["state"] == "submitted"
    await asyncio.sleep(0.1)
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "decided"
    assert (await sim_stats(http, simulator))["submissions"] == 1
    assert await outbox_states(db) == ["submitted", "decided"]


async def test_interrupted_submit_that_arrived_is_reconciled_not_resent(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    stale = utcnow() - timedelta(seconds=120)
    eid = await add_escalation(db, state="in_flight", attempts=1, claimed_at=stale)
    await db.pool.execute(
        "INSERT INTO escalator.attempts (attempt_id, escalation_id, kind)"
        " VALUES ($1, $2, 'submit')",
        uuid.uuid4(),
        eid,
    )
    # The process died after the platform received the notice.
    await worker.adapter.submit(notice_for(await escalation(db, eid), Settings()))
    await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "decided"
    assert (await sim_stats(http, simulator))["submissions"] == 1
    results = await db.pool.fetch(
        "SELECT kind, result FROM escalator.attempts ORDER BY started_at, kind"
    )
    assert sorted((a["kind"], a["result"]) for a in results) == [
        ("lookup", "ok"),
        ("submit", "lost"),
    ]


async def test_interrupted_submit_that_never_arrived_is_sent_once(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    stale = utcnow() - timedelta(seconds=120)
    eid = await add_escalation(db, state="in_flight", attempts=1, claimed_at=stale)
    await worker.step()
    assert (await escalation(db, eid))["state"] == "queued"
    await worker.step()
    assert (await escalation(db, eid))["state"] == "decided"
    stats = await sim_stats(http, simulator)
    assert stats["submissions"] == 1
    assert stats["repeated_client_references"] == {}


async def test_live_claim_is_left_alone(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await add_escalation(db, state="in_flight", attempts=1, claimed_at=utcnow())
    assert await worker.step() == 0
    assert (await escalation(db, eid))["state"] == "in_flight"
    assert (await sim_stats(http, simulator))["submissions"] == 0


async def test_rate_limited_then_retried_then_failed_after_last_attempt(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    await http.post(f"{simulator}/_sim/config", json={"rate_limit_rate": 1.0})
    eid = await add_escalation(db)
    await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "retrying"
    assert row["next_action_at"] >= utcnow() + timedelta(seconds=0.5)  # honours Retry-After
    assert await outbox_states(db) == []
    for _ in range(2):
        await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
        # Retry-After holds every call to the platform, not only this escalation's.
        assert worker.breaker.waiting()
        assert await worker.step() == 0
        await asyncio.sleep(worker.breaker.resume_in_s())
        await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "failed"
    assert row["attempts"] == 3
    assert "gave up after 3 attempts" in row["reason"]
    assert await outbox_states(db) == ["failed"]
    assert (await sim_stats(http, simulator))["submissions"] == 0
    results = await db.pool.fetch("SELECT http_status FROM escalator.attempts")
    assert [r["http_status"] for r in results] == [429, 429, 429]


async def test_platform_error_then_success(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    await http.post(f"{simulator}/_sim/config", json={"error_rate": 1.0})
    eid = await add_escalation(db)
    await worker.step()
    assert (await escalation(db, eid))["state"] == "retrying"
    await http.post(f"{simulator}/_sim/config", json={"error_rate": 0.0})
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "decided"
    assert row["attempts"] == 2


async def test_unclear_submits_are_looked_up_with_backoff_then_handed_to_a_person(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await add_escalation(db)
    worker.adapter = BrokenPlatform()
    await worker.step()
    row = await escalation(db, eid)
    assert (row["state"], row["attempts"]) == ("in_flight", 1)  # unclear: look it up next
    for expected_lookups in (1, 2, 3):
        await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
        await worker.step()
        row = await escalation(db, eid)
        assert row["lookups"] == expected_lookups
    assert row["state"] == "needs_manual"
    assert await outbox_states(db) == ["needs_manual"]
    assert (await sim_stats(http, simulator))["submissions"] == 0


class BrokenPlatform(TikTokAdapter):
    """Answers every call with an unclear failure (as a 500 would)."""

    def __init__(self) -> None:
        pass

    async def submit(self, notice: Any) -> Any:
        raise RetryableError("500", http_status=500, maybe_received=True)

    async def status(self, reference: str) -> Any:
        raise RetryableError("500", http_status=500, maybe_received=True)

    async def lookup(self, client_reference: uuid.UUID) -> Any:
        raise RetryableError("500", http_status=500, maybe_received=True)


def test_claims_fit_within_the_lease() -> None:
    settings = Settings()
    w = PlatformWorker(BrokenPlatform(), None, None, settings)  # type: ignore[arg-type]
    # 32 slots x 60 s / 11 s per call = 174, over 2 loops
    assert w.claim_limit() == 87
    slow = Settings(platform_rate_per_s=0.5)
    assert PlatformWorker(BrokenPlatform(), None, None, slow).claim_limit() == 15  # type: ignore[arg-type]


async def test_a_rate_below_one_call_per_second_still_calls(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """Hole 7: aiolimiter refused a capacity below one call; every escalation then ended
    `needs_manual` with no call made."""
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    slow = Settings(platform_rate_per_s=0.5, escalation_claim_lease_s=30)
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), slow
    )
    eid = await add_escalation(db)
    await worker.step()
    assert (await escalation(db, eid))["state"] == "decided"
    assert (await sim_stats(http, simulator))["submissions"] == 1


class BuggyAdapter(TikTokAdapter):
    """A programming error in building the request (as a bad refactor would make)."""

    def payload(self, notice: Any) -> dict[str, Any]:
        raise KeyError("category")


async def test_a_programming_error_fails_loudly_and_is_not_a_platform_answer(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    """Hole 7: the catch-all turned a bug into "maybe received" and, after lookups,
    `needs_manual`. Now the step raises, and the claim waits for its lease."""
    worker.adapter = BuggyAdapter(http, simulator)
    eid = await add_escalation(db)
    with pytest.raises(KeyError):
        await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "in_flight"
    assert row["claimed_at"] is not None  # reconciled by lookup once the lease expires
    assert await outbox_states(db) == []
    assert (await sim_stats(http, simulator))["submissions"] == 0


async def test_an_accepted_notice_with_an_unknown_status_keeps_its_reference(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    """Hole 8: a 2xx answer with a status word the adapter does not know was `failed`,
    losing the platform's reference. Now a person reads it, the reference kept."""
    await http.post(f"{simulator}/_sim/config", json={"status_override": "ESCALATED_TO_LEGAL"})
    eid = await add_escalation(db)
    await worker.step()
    row = await escalation(db, eid)
    assert row["state"] == "needs_manual"
    assert row["platform_reference"].startswith("tiktok-")
    assert "unknown status 'ESCALATED_TO_LEGAL'" in row["reason"]
    assert await outbox_states(db) == ["needs_manual"]
    assert (await sim_stats(http, simulator))["submissions"] == 1
    assert await worker.step() == 0  # not re-sent


async def test_a_reclaim_closes_every_open_attempt_as_lost(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    """Hole 19: a status call in flight when the process died stayed open for good (only
    an interrupted lookup's attempt was closed). Every kind is closed as `lost` now."""
    await http.post(f"{simulator}/_sim/config", json={"decision_delay_ms": 60_000})
    eid = await add_escalation(db)
    await worker.step()  # submitted, decision pending
    reference = (await escalation(db, eid))["platform_reference"]
    stale = utcnow() - timedelta(seconds=120)
    await db.pool.execute(
        "UPDATE escalator.escalations SET claimed_at = $1, next_action_at = now()", stale
    )
    died = uuid.uuid4()  # a status call the killed process had in flight
    await db.pool.execute(
        "INSERT INTO escalator.attempts (attempt_id, escalation_id, kind, started_at)"
        " VALUES ($1, $2, 'status', $3)",
        died,
        eid,
        stale,
    )
    await worker.step()
    lost = await db.pool.fetchrow("SELECT * FROM escalator.attempts WHERE attempt_id = $1", died)
    assert (lost["result"], lost["finished_at"] is not None) == ("lost", True)
    assert (
        await db.pool.fetchval("SELECT count(*) FROM escalator.attempts WHERE result IS NULL") == 0
    )
    row = await escalation(db, eid)
    assert (row["state"], row["platform_reference"]) == ("submitted", reference)


async def test_the_most_severe_harm_decides_the_notice_category(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    """Hole 16: the alphabetically first harm type decided, so bullying with a threat to
    life went out as harassment."""
    eid = await add_escalation(db, harm_types=["bullying_harassment", "threats_risk_to_life"])
    await worker.step()
    async with http.get(
        f"{simulator}/tiktok/v1/notices",
        params={"external_id": str(eid)},
        headers=expected_headers(PLATFORMS["tiktok"], dev_credential),
    ) as r:
        received = await r.json()
    assert received["category"] == "violent_threats"  # not harassment_and_bullying
    assert received["dsa_category"] == "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY"


async def test_urgent_escalations_are_claimed_first(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """Hole 16: claims went by due time only; an older normal escalation went before a
    critical one."""
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    one_at_a_time = Settings(escalation_claim_batch=1, escalation_claim_lease_s=30)
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), one_at_a_time
    )
    old = utcnow() - timedelta(minutes=10)
    ids = {
        urgency: await add_escalation(
            db, urgency=urgency, next_action_at=old + timedelta(minutes=n)
        )
        for n, urgency in enumerate(["normal", "high", "critical"])
    }
    order = []
    for _ in range(3):
        await worker.step()
        rows = await db.pool.fetch(
            "SELECT urgency FROM escalator.escalations WHERE state = 'decided' ORDER BY decided_at"
        )
        order = [r["urgency"] for r in rows]
    assert order == ["critical", "high", "normal"]
    assert len(ids) == 3


async def test_an_urgency_outside_the_order_is_claimed_last_not_never(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    one_at_a_time = Settings(escalation_claim_batch=1, escalation_claim_lease_s=30)
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), one_at_a_time
    )
    old = utcnow() - timedelta(minutes=10)
    await add_escalation(db, urgency="someday", next_action_at=old)
    await add_escalation(db, urgency="normal", next_action_at=old + timedelta(minutes=1))
    for _ in range(2):
        assert await worker.step() == 1
    rows = await db.pool.fetch(
        "SELECT urgency FROM escalator.escalations WHERE state = 'decided' ORDER BY decided_at"
    )
    assert [r["urgency"] for r in rows] == ["normal", "someday"]


async def test_a_pending_decision_is_chased_less_and_less_often(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """Hole 9: the gap between status checks doubles up to the configured cap."""
    await clear_escalator(db)
    settings = Settings(
        escalation_status_interval_s=2,
        escalation_status_max_interval_s=10,
        escalation_claim_lease_s=30,
    )
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), settings
    )
    await http.post(f"{simulator}/_sim/config", json={"decision_delay_ms": 3_600_000})
    eid = await add_escalation(db)
    gaps = []
    for _ in range(5):
        await worker.step()
        row = await escalation(db, eid)
        assert row["state"] == "submitted"
        gaps.append(round((row["next_action_at"] - utcnow()).total_seconds()))
        await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    assert gaps == [2, 4, 8, 10, 10]


async def run_until_final(worker: PlatformWorker, db: Database, eid: uuid.UUID) -> Any:
    """Step the worker as its loop would until the escalation is final (or 10 s pass)."""
    for _ in range(200):
        await worker.step()
        row = await escalation(db, eid)
        if row["state"] in ("decided", "failed", "needs_manual"):
            return row
        await asyncio.sleep(0.05)
    return row


@pytest.mark.parametrize("lost_reply", [True, False])
async def test_a_notice_stored_late_is_found_not_sent_again(
    db: Database, simulator: str, http: aiohttp.ClientSession, lost_reply: bool
) -> None:
    """Hole 6: after an unclear submit the lookup ran about a second later and read
    "not found" as "never received", so a notice the platform stored late went twice.
    A lookup that finds nothing re-sends only after the platform's settle period."""
    await clear_escalator(db)
    settings = Settings(
        escalation_retry_base_s=0.05,
        escalation_claim_lease_s=30,
        # Without a lost reply: every call outlives the call budget (1.5 s; the simulator
        # answers after 0.5 to 1.5 times its latency), the notice is received up to 4.5 s
        # and stored up to 5.2 s after it was sent, inside the settle period.
        platform_settle_s=1.5 if lost_reply else 6.0,
        platform_timeout_s=0.5 if not lost_reply else 10,
    )
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), settings
    )
    if lost_reply:  # stored, the reply lost, and stored late
        faults = {"lost_reply_rate": 1.0, "store_delay_ms": 700}
    else:  # the platform is slower than our timeout and stores late
        faults = {"latency_ms": 3000, "store_delay_ms": 700}
    await http.post(f"{simulator}/_sim/config", json=faults)
    eid = await add_escalation(db)
    await worker.step()
    assert (await escalation(db, eid))["state"] == "in_flight"  # unclear: look it up
    await http.post(f"{simulator}/_sim/config", json={"lost_reply_rate": 0, "latency_ms": 0})
    row = await run_until_final(worker, db, eid)
    stats = await sim_stats(http, simulator)
    assert stats["per_client_reference"] == {str(eid): 1}
    assert row["state"] == "decided"
    rows = await db.pool.fetch("SELECT kind FROM escalator.attempts ORDER BY started_at")
    kinds = [r["kind"] for r in rows]
    assert kinds[0] == "submit"
    assert "lookup" in kinds


async def test_a_notice_that_never_arrived_is_sent_again_after_the_settle_period(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    await clear_escalator(db)
    settings = Settings(
        escalation_retry_base_s=0.05, escalation_claim_lease_s=30, platform_settle_s=0.5
    )
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), settings
    )
    eid = await add_escalation(db)
    worker.adapter = BrokenPlatform()  # the submit fails unclearly, never reaching the platform
    await worker.step()
    worker.adapter = TikTokAdapter(http, simulator)
    row = await run_until_final(worker, db, eid)
    assert row["state"] == "decided"
    assert row["attempts"] == 2
    assert (await sim_stats(http, simulator))["per_client_reference"] == {str(eid): 1}


async def test_a_claim_stalled_past_its_lease_is_released_not_sent(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """Hole 14: lease sizing ignored waits for the rate limiter (and the slots and a
    database connection). A claim stalled until its lease expired still made its call,
    while another worker could reclaim and look it up. Now it goes back unsent."""
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    # One call per 5 s; a 4 s lease; calls of at most 1.5 s must start within 1.5 s.
    settings = Settings(
        platform_rate_per_s=0.2,
        platform_timeout_s=0.5,
        escalation_claim_lease_s=4,
        escalation_claim_batch=1,
    )
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), settings
    )
    first = await add_escalation(db, next_action_at=utcnow() - timedelta(seconds=1))
    stalled = await add_escalation(db)
    await worker.step()  # takes the rate limit's only token
    assert (await escalation(db, first))["state"] == "decided"
    await worker.step()  # waits for the limiter past the point where its call could end in time
    row = await escalation(db, stalled)
    assert (row["state"], row["attempts"], row["claimed_at"]) == ("queued", 0, None)
    attempt = await db.pool.fetchrow(
        "SELECT * FROM escalator.attempts WHERE escalation_id = $1", stalled
    )
    assert attempt["result"] == "not_sent"
    assert (await sim_stats(http, simulator))["per_client_reference"] == {str(first): 1}
