"""The escalator's deadline loop on real PostgreSQL against the real simulator: a passed
deadline with no decision is announced `breached` once to every linked case, then the
platform is re-notified with follow-ups citing its reference (never a second notice), at
most `renotify_max` times; escalations waiting for a person breach without follow-ups;
two loops at once never announce or send twice. Counted by the simulator and the outbox."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.activity import start_attempt
from helpline_escalator.adapters.base import Notice, PlatformAdapter
from helpline_escalator.adapters.manual import ManualChannelAdapter
from helpline_escalator.adapters.registry import MANUAL_CHANNELS
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.deadlines import RULES_DEADLINE_HOURS, DeadlineWatch, deadline_s
from helpline_shared.db import Database
from helpline_shared.events import utcnow
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_triage.rules import RuleSet
from tests.escalator_support import (
    activity,
    clear_escalator,
    escalation,
    insert_escalation,
    module_database,
    module_simulator,
    outcomes,
    quiet_simulator,
    sim_activity,
)

simulator = module_simulator()
db = module_database("helpline_deadlines")


@pytest.fixture(autouse=True)
async def clean(db: Database) -> None:
    await clear_escalator(db)


@pytest.fixture
async def http(simulator: str) -> AsyncIterator[aiohttp.ClientSession]:
    # Notices stay undecided: their deadline can pass.
    async with quiet_simulator(simulator, decision_delay_ms=3_600_000) as session:
        yield session


def settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {
        "renotify_interval_s": 3600.0,
        "renotify_max": 3,
        "escalation_claim_lease_s": 30.0,
        **changes,
    }
    return Settings(**values)


def watch(db: Database, s: Settings, adapters: dict[str, PlatformAdapter]) -> DeadlineWatch:
    return DeadlineWatch(db, Outbox(db, KafkaBroker(), "escalator"), s, adapters.get)


async def notice_on(adapter: TikTokAdapter, eid: uuid.UUID) -> str:
    """Send the escalation's notice to the simulator, as the dispatcher would; its reference."""
    sent = await adapter.submit(
        Notice(
            eid,
            f"https://www.tiktok.com/@x/video/{eid.int % 10**19}",
            ("hate",),
            "high",
            "Hateful comments about a pupil.",
            "Helpline",
            "helpline@example.org",
        )
    )
    return sent.reference


async def add_escalation(db: Database, cases: int = 1, **overrides: Any) -> uuid.UUID:
    eid = uuid.uuid4()
    row: dict[str, Any] = {
        "escalation_id": eid,
        "case_id": uuid.uuid4(),
        "url": f"https://www.tiktok.com/@x/video/{eid.int % 10**19}",
        "normalized_url": f"https://www.tiktok.com/@x/video/{eid.int % 10**19}",
        "platform": "tiktok",
        "route": "platform",
        "harm_types": ["hate"],
        "urgency": "high",
        "received_at": utcnow() - timedelta(hours=1),
        "due_at": utcnow() - timedelta(seconds=1),
        "state": "submitted",
        "attempts": 1,
        "linked_cases": cases,
        **overrides,
    }
    return await insert_escalation(db, row, cases)


async def submitted(db: Database, adapter: TikTokAdapter, cases: int = 1, **kw: Any) -> uuid.UUID:
    """A submitted escalation whose notice the simulator holds."""
    eid = await add_escalation(db, cases, **kw)
    reference = await notice_on(adapter, eid)
    await db.pool.execute(
        "UPDATE escalator.escalations SET platform_reference = $2 WHERE escalation_id = $1",
        eid,
        reference,
    )
    return eid


@pytest.fixture
def tiktok(http: aiohttp.ClientSession, simulator: str) -> TikTokAdapter:
    return TikTokAdapter(http, simulator)


async def test_a_breach_is_announced_once_to_every_linked_case(
    db: Database, tiktok: TikTokAdapter
) -> None:
    eid = await submitted(db, tiktok, cases=2)
    first, second = (watch(db, settings(), {"tiktok": tiktok}) for _ in range(2))

    counted = await asyncio.gather(first.breach(), second.breach(), first.breach())

    assert sum(counted) == 1
    events = await outcomes(db)
    assert [e.state for e in events] == ["breached", "breached"]
    assert len({e.case_id for e in events}) == 2
    row = await escalation(db, eid)
    assert all(e.escalation_id == eid and e.due_at == row["due_at"] for e in events)
    assert all(
        e.followups == 0 and e.platform_reference == row["platform_reference"] for e in events
    )
    assert "deadline" in (events[0].reason or "")
    assert row["breached_at"] is not None
    assert await second.breach() == 0
    assert len(await outcomes(db)) == 2


async def test_the_platform_is_renotified_up_to_the_max_and_never_sent_a_second_notice(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await submitted(db, tiktok)
    w = watch(db, settings(renotify_interval_s=0.05, renotify_max=3), {"tiktok": tiktok})
    await w.breach()

    deadline = time.monotonic() + 10
    while (await escalation(db, eid))["next_followup_at"] is not None:
        assert time.monotonic() < deadline, "the follow-ups did not end"
        await w.follow_up()
        await asyncio.sleep(0.05)
    for _ in range(3):  # nothing more is sent, however often the loop looks
        await w.follow_up()

    row = await escalation(db, eid)
    assert row["followups"] == 3
    sim = await sim_activity(http, simulator, "tiktok")
    assert sim["notices"] == 1
    assert sim["followups_per_reference"] == {row["platform_reference"]: 3}
    followups = [a for a in await activity(db) if a.kind == "followup"]
    assert [(a.escalation_id, a.result) for a in followups] == [(eid, "ok")] * 3
    assert len({a.event_id for a in followups}) == 3
    assert [e.state for e in await outcomes(db)] == ["breached"]


async def test_two_loops_at_once_send_one_follow_up(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await submitted(db, tiktok)
    first, second = (watch(db, settings(), {"tiktok": tiktok}) for _ in range(2))
    await first.breach()

    await asyncio.gather(first.follow_up(), second.follow_up(), first.follow_up())

    assert (await escalation(db, eid))["followups"] == 1
    assert (await sim_activity(http, simulator, "tiktok"))["followups"] == 1


async def test_waiting_for_a_person_breaches_without_a_follow_up(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    manual = await add_escalation(db, state="needs_manual", reason="unknown status")
    hotline = await submitted(db, tiktok, route="hotline")
    w = watch(db, settings(renotify_interval_s=0.01), {"tiktok": tiktok})

    assert await w.breach() == 2
    for _ in range(3):
        await w.follow_up()
        await asyncio.sleep(0.02)

    assert sorted(e.escalation_id for e in await outcomes(db)) == sorted([manual, hotline])
    # The breach keeps why it waits for a person: the queue shows both.
    (manual_breach,) = [e for e in await outcomes(db) if e.escalation_id == manual]
    assert manual_breach.reason is not None
    assert manual_breach.reason.startswith("no decision by its deadline (")
    assert manual_breach.reason.endswith("; waiting for a person: unknown status")
    assert (await escalation(db, manual))["followups"] == 0
    assert (await escalation(db, hotline))["next_followup_at"] is None
    assert (await sim_activity(http, simulator, "tiktok"))["followups"] == 0


async def test_decided_or_not_yet_due_escalations_do_not_breach(
    db: Database, tiktok: TikTokAdapter
) -> None:
    await add_escalation(db, state="decided", decision="no_violation")
    await add_escalation(db, state="failed", reason="refused")
    await add_escalation(db, due_at=utcnow() + timedelta(hours=1))
    # Without a due time of its own: the urgency's deadline after it was received.
    await add_escalation(db, due_at=None, urgency="normal")  # received 1 h ago, 168 h

    assert await watch(db, settings(), {"tiktok": tiktok}).breach() == 0
    assert await outcomes(db) == []


async def test_without_a_due_time_the_urgencys_deadline_applies(
    db: Database, tiktok: TikTokAdapter
) -> None:
    eid = await add_escalation(db, due_at=None, urgency="normal", state="queued")
    await add_escalation(db, due_at=None, urgency="critical", state="queued")  # 24 h

    assert await watch(db, settings(deadline_normal_s=60), {"tiktok": tiktok}).breach() == 1

    (event,) = await outcomes(db)
    row = await escalation(db, eid)
    assert event.escalation_id == eid
    assert event.due_at == row["received_at"] + timedelta(seconds=60)


async def test_breached_before_its_notice_went_out_it_is_renotified_once_submitted(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await add_escalation(db, state="retrying", attempts=2)
    w = watch(db, settings(renotify_interval_s=0.05), {"tiktok": tiktok})
    await w.breach()
    await w.follow_up()
    assert (await sim_activity(http, simulator, "tiktok"))["followups"] == 0
    assert (await escalation(db, eid))["next_followup_at"] is not None  # looked at again

    reference = await notice_on(tiktok, eid)
    await db.pool.execute(
        """UPDATE escalator.escalations SET state = 'submitted', platform_reference = $2,
               next_followup_at = now() WHERE escalation_id = $1""",
        eid,
        reference,
    )
    await w.follow_up()

    sim = await sim_activity(http, simulator, "tiktok")
    assert sim["followups_per_reference"] == {reference: 1}


async def test_a_decision_ends_the_follow_ups(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await submitted(db, tiktok)
    w = watch(db, settings(renotify_interval_s=0.01), {"tiktok": tiktok})
    await w.breach()
    await w.follow_up()
    await db.pool.execute(
        """UPDATE escalator.escalations SET state = 'decided', decision = 'removed'
           WHERE escalation_id = $1""",
        eid,
    )
    await asyncio.sleep(0.02)

    await w.follow_up()

    row = await escalation(db, eid)
    assert (row["followups"], row["next_followup_at"]) == (1, None)
    assert (await sim_activity(http, simulator, "tiktok"))["followups"] == 1


async def test_a_follow_up_the_platform_refuses_ends_them_with_the_reason(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await add_escalation(db, platform_reference="tiktok-99999999")
    w = watch(db, settings(renotify_interval_s=0.01), {"tiktok": tiktok})
    await w.breach()

    await w.follow_up()

    row = await escalation(db, eid)
    assert (row["followups"], row["next_followup_at"]) == (0, None)
    (refused,) = [a for a in await activity(db) if a.kind == "followup"]
    assert (refused.result, refused.http_status) == ("permanent", 404)
    assert "no such notice" in (refused.error or "")


async def test_a_follow_up_that_fails_for_now_is_tried_again(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await submitted(db, tiktok)
    w = watch(db, settings(renotify_interval_s=0.01), {"tiktok": tiktok})
    await w.breach()
    await http.post(f"{simulator}/_sim/config", json={"error_rate": 1.0})
    await w.follow_up()
    assert (await escalation(db, eid))["followups"] == 0
    await http.post(f"{simulator}/_sim/config", json={"error_rate": 0.0})
    await asyncio.sleep(0.02)

    await w.follow_up()

    assert (await escalation(db, eid))["followups"] == 1
    results = [a.result for a in await activity(db) if a.kind == "followup"]
    assert results == ["retryable", "ok"]


async def test_a_manual_channel_is_chased_by_a_person(db: Database) -> None:
    """A WhatsApp escalation a practitioner sent by hand (submitted with the reference they
    recorded): its follow-up is by hand too, said once in an activity event."""
    adapters: dict[str, PlatformAdapter] = {"whatsapp": MANUAL_CHANNELS["whatsapp"]()}
    assert isinstance(adapters["whatsapp"], ManualChannelAdapter)
    eid = await add_escalation(db, platform="whatsapp", platform_reference="WA-123")
    w = watch(db, settings(renotify_interval_s=0.01), adapters)
    await w.breach()

    await w.follow_up()
    await asyncio.sleep(0.02)
    await w.follow_up()

    assert (await escalation(db, eid))["next_followup_at"] is None
    (by_hand,) = [a for a in await activity(db) if a.kind == "followup"]
    assert by_hand.result == "permanent"
    assert "by hand" in (by_hand.error or "")


def test_the_fallback_deadlines_are_the_rules_datas_unless_set() -> None:
    rules = RuleSet.load()
    for urgency, hours in RULES_DEADLINE_HOURS.items():
        assert rules.deadline(urgency) == timedelta(hours=hours)  # type: ignore[arg-type]
        assert deadline_s(Settings(), urgency) == hours * 3600
    assert deadline_s(Settings(deadline_high_s=2.5), "high") == 2.5


async def test_a_platform_whose_circuit_is_open_is_sent_no_follow_up_until_it_closes(
    db: Database, tiktok: TikTokAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await submitted(db, tiktok)
    s = settings(renotify_interval_s=0.01)
    outbox = Outbox(db, KafkaBroker(), "escalator")
    open_circuit = DeadlineWatch(db, outbox, s, {"tiktok": tiktok}.get, lambda: ["tiktok"])
    await open_circuit.breach()  # a breach is announced whatever the circuit

    assert await open_circuit.follow_up() == 0
    assert (await sim_activity(http, simulator, "tiktok"))["followups"] == 0
    assert (await escalation(db, eid))["next_followup_at"] is not None  # it waits

    await watch(db, s, {"tiktok": tiktok}).follow_up()
    assert (await escalation(db, eid))["followups"] == 1


async def test_a_follow_up_a_stopped_process_left_open_ends_lost_and_only_it(
    db: Database, tiktok: TikTokAdapter
) -> None:
    eid = await submitted(db, tiktok)
    w = watch(db, settings(), {"tiktok": tiktok})
    await w.breach()
    async with db.pool.acquire() as conn:
        # A process stopped mid-call: its follow-up attempt stays open, its claim ran out.
        cut_short = await start_attempt(conn, eid, "followup")
        appeal = await start_attempt(conn, eid, "appeal")
    await db.pool.execute(
        "UPDATE escalator.escalations SET next_followup_at = now() WHERE escalation_id = $1", eid
    )

    await w.follow_up()

    rows = await db.pool.fetch(
        "SELECT attempt_id, kind, result, error FROM escalator.attempts WHERE escalation_id = $1",
        eid,
    )
    by_id = {r["attempt_id"]: r for r in rows}
    assert by_id[cut_short]["result"] == "lost"
    assert "claim expired" in by_id[cut_short]["error"]
    assert by_id[appeal]["result"] is None  # another kind of call is not this loop's
    sent = [r for r in rows if r["kind"] == "followup" and r["attempt_id"] != cut_short]
    assert [r["result"] for r in sent] == ["ok"]
