"""Every finished platform call is an activity event, and outcomes carry the casework
fields, on real PostgreSQL and the real simulator: the event is queued in the transaction
that finishes its attempt, keyed by escalation id with the attempt's id as event id; a
call released unsent is no event; an attempt a dead process left open ends `lost` and
says so; outcome events carry route and due time (the earliest of the linked cases')
and what the announcer gave (actor, note, follow-ups, overturned)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.dispatcher import PlatformWorker
from helpline_escalator.links import link_cases
from helpline_escalator.outcomes import Reached, announce
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    derive_id,
    utcnow,
)
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_shared.topics import ESCALATION_ACTIVITY
from tests.escalator_support import (
    clear_escalator,
    module_database,
    module_simulator,
    outcomes,
    quiet_simulator,
    triaged,
)

simulator = module_simulator()
db = module_database("helpline_esc_activity")


@pytest.fixture
async def http(simulator: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with quiet_simulator(simulator) as session:
        yield session


@pytest.fixture
async def worker(db: Database, simulator: str, http: aiohttp.ClientSession) -> PlatformWorker:
    await clear_escalator(db)
    settings = Settings(escalation_retry_base_s=0.05, escalation_claim_lease_s=30)
    return PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "escalator"), settings
    )


async def link(db: Database, *cases: CaseTriagedV1) -> uuid.UUID:
    async with db.pool.acquire() as conn, conn.transaction():
        linked = await link_cases(conn, cases)
        await Outbox(db, KafkaBroker(), "escalator").add(conn, linked.outcomes)
    eid = await db.pool.fetchval(
        "SELECT escalation_id FROM escalator.escalation_cases WHERE case_id = $1",
        cases[0].case_id,
    )
    assert isinstance(eid, uuid.UUID)
    return eid


async def activity(db: Database) -> list[tuple[bytes, EscalationActivityV1]]:
    rows = await db.pool.fetch(
        "SELECT key, value FROM outbox WHERE topic = $1 ORDER BY seq", ESCALATION_ACTIVITY.name
    )
    return [(r["key"], EscalationActivityV1.model_validate_json(r["value"])) for r in rows]


async def attempts(db: Database) -> list[Any]:
    return list(await db.pool.fetch("SELECT * FROM escalator.attempts ORDER BY started_at"))


async def test_each_finished_call_is_one_activity_event_with_the_attempt_s_id(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    await http.post(f"{simulator}/_sim/config", json={"decision_delay_ms": 50})
    eid = await link(db, triaged("https://www.tiktok.com/@a/video/1", due_in_s=3600))
    await worker.step()  # submit: accepted, decision pending
    await asyncio.sleep(0.1)
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    await worker.step()  # status: decided
    rows = await attempts(db)
    events = await activity(db)
    assert [a["kind"] for a in rows] == ["submit", "status"]
    assert [e.event_id for _, e in events] == [a["attempt_id"] for a in rows]
    for (key, event), row in zip(events, rows, strict=True):
        assert key == str(eid).encode()
        assert event.escalation_id == eid
        assert event.platform == "tiktok"
        assert (event.kind, event.result, event.http_status) == (
            row["kind"],
            "ok",
            row["http_status"],
        )
        assert event.started_at == row["started_at"]
        assert event.finished_at == row["finished_at"]
    assert [o.state for o in await outcomes(db)] == ["submitted", "decided"]


async def test_a_call_released_unsent_is_no_activity_event(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    settings = Settings(
        platform_rate_per_s=0.2,
        platform_timeout_s=0.5,
        escalation_claim_lease_s=4,
        escalation_claim_batch=1,
    )
    worker = PlatformWorker(
        TikTokAdapter(http, simulator), db, Outbox(db, KafkaBroker(), "e"), settings
    )
    await link(db, triaged("https://www.tiktok.com/@a/video/1", due_in_s=None))
    await link(db, triaged("https://www.tiktok.com/@a/video/2", due_in_s=None))
    await worker.step()  # takes the rate limit's only token
    await worker.step()  # released: its call could not end within its lease
    results = sorted(a["result"] for a in await attempts(db))
    assert results == ["not_sent", "ok"]
    events = await activity(db)
    assert [(e.kind, e.result) for _, e in events] == [("submit", "ok")]


async def test_an_attempt_left_open_by_a_dead_process_ends_lost_on_the_activity_topic(
    worker: PlatformWorker, db: Database, http: aiohttp.ClientSession, simulator: str
) -> None:
    await http.post(f"{simulator}/_sim/config", json={"decision_delay_ms": 60_000})
    eid = await link(db, triaged("https://www.tiktok.com/@a/video/1", due_in_s=None))
    await worker.step()  # submitted, decision pending
    stale = utcnow() - timedelta(seconds=120)
    await db.pool.execute(
        "UPDATE escalator.escalations SET claimed_at = $1, next_action_at = now()", stale
    )
    died = uuid.uuid4()
    await db.pool.execute(
        "INSERT INTO escalator.attempts (attempt_id, escalation_id, kind, started_at)"
        " VALUES ($1, $2, 'status', $3)",
        died,
        eid,
        stale,
    )
    await worker.step()
    by_id = {e.event_id: e for _, e in await activity(db)}
    assert by_id[died].result == "lost"
    assert by_id[died].error == "process stopped during the call; its claim expired"
    assert len(by_id) == 3  # the submit, the lost status call, the new status call
    assert len(await attempts(db)) == 3


async def test_outcomes_carry_route_and_the_earliest_due_time_of_the_linked_cases(
    worker: PlatformWorker, db: Database
) -> None:
    url = "https://www.tiktok.com/@a/video/1"
    late = triaged(url, due_in_s=7200)
    soon = triaged(url, due_in_s=600, urgency="high")
    eid = await link(db, late)
    await link(db, soon)
    due = await db.pool.fetchval(
        "SELECT due_at FROM escalator.escalations WHERE escalation_id = $1", eid
    )
    assert due == soon.decision_due_at
    await worker.step()
    decided = [o for o in await outcomes(db) if o.state == "decided"]
    assert {o.case_id for o in decided} == {late.case_id, soon.case_id}
    assert {(o.route, o.due_at) for o in decided} == {("platform", soon.decision_due_at)}
    assert {(o.actor, o.note, o.followups, o.overturned) for o in decided} == {
        (None, None, None, None)
    }


async def test_new_states_carry_their_facts_once_and_a_later_case_hears_the_same(
    worker: PlatformWorker, db: Database
) -> None:
    url = "https://www.tiktok.com/@a/video/1"
    first = triaged(url, due_in_s=60)
    eid = await link(db, first)
    now = utcnow()
    breached = Reached(eid, "breached", 0, now, followups=2)
    appealed = Reached(eid, "appeal_decided", 1, now, decision="removed", overturned=True)
    closed = Reached(eid, "closed", 0, now, actor="key-1", note="advised the school")
    async with db.pool.acquire() as conn, conn.transaction():
        told = await announce(conn, [breached, appealed, closed])
        again = await announce(conn, [breached])  # once per escalation
    assert again == []
    events = [EscalationOutcomeV1.model_validate_json(m.value) for m in told]
    by_state = {e.state: e for e in events}
    assert by_state["breached"].followups == 2
    assert (by_state["appeal_decided"].decision, by_state["appeal_decided"].overturned) == (
        "removed",
        True,
    )
    assert (by_state["closed"].actor, by_state["closed"].note) == ("key-1", "advised the school")
    url_id = first.urls[0].url_id
    assert by_state["breached"].event_id == derive_id("escalation.outcome", url_id, "breached")
    # A case linking later hears each state with the same facts.
    later = triaged(url, due_in_s=3600)
    async with db.pool.acquire() as conn, conn.transaction():
        caught = (await link_cases(conn, [later])).outcomes
    heard = {
        e.state: e
        for e in (EscalationOutcomeV1.model_validate_json(m.value) for m in caught)
        if e.case_id == later.case_id
    }
    for state in ("breached", "appeal_decided", "closed"):
        a, b = by_state[state], heard[state]
        assert (a.followups, a.overturned, a.actor, a.note, a.occurred_at, a.due_at) == (
            b.followups,
            b.overturned,
            b.actor,
            b.note,
            b.occurred_at,
            b.due_at,
        )


async def test_a_state_reached_again_is_told_again_with_its_own_event_id(
    worker: PlatformWorker, db: Database
) -> None:
    case = triaged("https://www.tiktok.com/@a/video/1", due_in_s=None)
    eid = await link(db, case)
    now = utcnow()
    async with db.pool.acquire() as conn, conn.transaction():
        one = await announce(conn, [Reached(eid, "needs_manual", 1, now, reason="unclear")])
        two = await announce(
            conn, [Reached(eid, "needs_manual", 2, now, reason="again", occurrence="cmd-2")]
        )
    assert len(one) == len(two) == 1
    ids = [EscalationOutcomeV1.model_validate_json(m.value).event_id for m in one + two]
    assert ids[0] == derive_id("escalation.outcome", case.urls[0].url_id, "needs_manual")
    assert ids[0] != ids[1]
