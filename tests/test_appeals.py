"""The escalator's appeal loop on real PostgreSQL against the real simulator: a requested
appeal of a "no violation" decision goes to the platform's appeal route once, is announced
`appealed` with the practitioner and their note, and its result `appeal_decided` with the
new decision and whether it overturned the old one; a refused appeal ends with the reason.
Counted by the simulator and the outbox."""

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

from helpline_escalator.adapters.base import Notice, PlatformAdapter
from helpline_escalator.adapters.reddit import RedditAdapter
from helpline_escalator.adapters.registry import MANUAL_CHANNELS
from helpline_escalator.appeals import APPEAL_BY_HAND, AppealDesk
from helpline_escalator.commands import Commands
from helpline_shared.db import Database
from helpline_shared.events import (
    TAKEDOWN_DECISIONS,
    PractitionerCommandV1,
    utcnow,
)
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
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

NOTE = "The account uses the pupil's photo and name; it breaches the impersonation policy."


simulator = module_simulator()
db = module_database("helpline_appeals")


@pytest.fixture(autouse=True)
async def clean(db: Database) -> None:
    await clear_escalator(db)


@pytest.fixture
async def http(simulator: str) -> AsyncIterator[aiohttp.ClientSession]:
    # Reddit leaves content up only as "no violation": at takedown rate 0, every
    # notice is decided so at once.
    async with quiet_simulator(simulator, takedown_rate=0.0, appeal_overturn_rate=1.0) as session:
        yield session


@pytest.fixture
def reddit(http: aiohttp.ClientSession, simulator: str) -> RedditAdapter:
    return RedditAdapter(http, simulator)


def desk(db: Database, adapters: dict[str, PlatformAdapter], **changes: Any) -> AppealDesk:
    s = Settings(
        escalation_status_interval_s=0.05,
        escalation_status_max_interval_s=0.2,
        escalation_claim_lease_s=30,
        **changes,
    )
    return AppealDesk(db, Outbox(db, KafkaBroker(), "escalator"), s, adapters.get)


async def configure(http: aiohttp.ClientSession, simulator: str, **changes: Any) -> None:
    async with http.post(f"{simulator}/_sim/config", json=changes) as r:
        assert r.status == 200


async def decided(
    db: Database,
    reddit: RedditAdapter | None,
    *,
    cases: int = 1,
    requested: bool = True,
    **overrides: Any,
) -> uuid.UUID:
    """An escalation the platform decided "no violation" (its notice sent to the
    simulator), whose appeal a practitioner requested."""
    eid = uuid.uuid4()
    url = f"https://www.reddit.com/r/x/comments/{eid.hex[:6]}/"
    reference = None
    if reddit is not None:
        sent = await reddit.submit(
            Notice(
                eid,
                url,
                ("impersonation",),
                "high",
                "An impersonation of a pupil.",
                "Helpline",
                "helpline@example.org",
            )
        )
        assert sent.decision == "no_violation"
        reference = sent.reference
    row: dict[str, Any] = {
        "escalation_id": eid,
        "case_id": uuid.uuid4(),
        "url": url,
        "normalized_url": url,
        "platform": "reddit",
        "route": "platform",
        "harm_types": ["impersonation"],
        "urgency": "high",
        "received_at": utcnow() - timedelta(hours=1),
        "state": "decided",
        "decision": "no_violation",
        "decided_at": utcnow(),
        "platform_reference": reference,
        "attempts": 1,
        "linked_cases": cases,
        "appeal_requested_at": utcnow() if requested else None,
        "appeal_actor": "key-practitioner-1" if requested else None,
        "appeal_note": NOTE if requested else None,
        **overrides,
    }
    return await insert_escalation(db, row, cases)


async def test_an_appeal_that_overturns_the_decision(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await decided(db, reddit, cases=2)

    assert await desk(db, {"reddit": reddit}).step() == 1

    events = await outcomes(db)
    assert [e.state for e in events] == ["appealed"] * 2 + ["appeal_decided"] * 2
    appealed, decided_ = events[0], events[-1]
    assert (appealed.actor, appealed.note, appealed.decision) == (
        "key-practitioner-1",
        NOTE,
        "no_violation",
    )
    assert decided_.overturned is True
    assert decided_.decision in TAKEDOWN_DECISIONS
    assert decided_.actor is None
    row = await escalation(db, eid)
    assert (row["state"], row["decision"], row["appealed_decision"]) == (
        "appeal_decided",
        decided_.decision,
        "no_violation",
    )
    assert row["appeal_overturned"] is True
    assert row["appeal_reference"].startswith("reddit-appeal-")
    sim = await sim_activity(http, simulator, "reddit")
    assert (sim["notices"], sim["appeals"], sim["overturns"]) == (1, 1, 1)
    assert [(a.kind, a.result) for a in await activity(db)] == [("appeal", "ok")]
    assert await desk(db, {"reddit": reddit}).step() == 0  # decided: nothing more to do


async def test_an_appeal_that_is_upheld(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    await configure(http, simulator, appeal_overturn_rate=0.0)
    eid = await decided(db, reddit)

    await desk(db, {"reddit": reddit}).step()

    appealed, upheld = await outcomes(db)
    assert (appealed.state, upheld.state) == ("appealed", "appeal_decided")
    assert (upheld.decision, upheld.overturned) == ("no_violation", False)
    assert "upheld" in (upheld.reason or "")
    row = await escalation(db, eid)
    assert (row["state"], row["decision"], row["appeal_overturned"]) == (
        "appeal_decided",
        "no_violation",
        False,
    )
    sim = await sim_activity(http, simulator, "reddit")
    assert (sim["appeals"], sim["overturns"]) == (1, 0)


async def test_a_pending_appeal_is_asked_for_its_result_until_decided(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await decided(db, reddit)
    await configure(http, simulator, decision_delay_ms=300)
    d = desk(db, {"reddit": reddit})

    await d.step()
    assert [e.state for e in await outcomes(db)] == ["appealed"]
    assert (await escalation(db, eid))["state"] == "appealed"

    deadline = time.monotonic() + 10
    while (await escalation(db, eid))["state"] != "appeal_decided":
        assert time.monotonic() < deadline, "the appeal was never decided"
        await d.step()
        await asyncio.sleep(0.05)

    assert [e.state for e in await outcomes(db)] == ["appealed", "appeal_decided"]
    row = await escalation(db, eid)
    assert row["appeal_checks"] >= 1
    kinds = {(a.kind, a.result) for a in await activity(db)}
    assert kinds == {("appeal", "ok")}
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 1


async def test_two_loops_at_once_send_one_appeal(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    await decided(db, reddit)
    first, second = desk(db, {"reddit": reddit}), desk(db, {"reddit": reddit})

    await asyncio.gather(first.step(), second.step(), first.step())

    assert [e.state for e in await outcomes(db)] == ["appealed", "appeal_decided"]
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 1
    assert len(await activity(db)) == 1


async def test_an_escalation_without_a_request_is_left_alone(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    await decided(db, reddit, requested=False)

    assert await desk(db, {"reddit": reddit}).step() == 0
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 0


async def test_an_appeal_the_platform_refuses_ends_with_the_reason(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    """The platform took the content down, so there is nothing to contest: 409."""
    await configure(http, simulator, takedown_rate=1.0)
    sent = await reddit.submit(
        Notice(
            uuid.uuid4(),
            "https://www.reddit.com/r/x/comments/abc/",
            ("hate",),
            "high",
            "Hate.",
            "Helpline",
            "helpline@example.org",
        )
    )
    eid = await decided(db, None, platform_reference=sent.reference)

    await desk(db, {"reddit": reddit}).step()

    assert await outcomes(db) == []
    row = await escalation(db, eid)
    assert (row["state"], row["appeal_requested_at"], row["appeal_reference"]) == (
        "decided",
        None,
        None,
    )
    (refused,) = await activity(db)
    assert (refused.kind, refused.result, refused.http_status) == ("appeal", "permanent", 409)
    assert "state forbids it" in (refused.error or "")
    assert await desk(db, {"reddit": reddit}).step() == 0


async def test_an_appeal_that_fails_for_now_is_sent_again(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    eid = await decided(db, reddit)
    d = desk(db, {"reddit": reddit})
    await configure(http, simulator, error_rate=1.0)
    await d.step()
    assert (await escalation(db, eid))["state"] == "decided"
    await configure(http, simulator, error_rate=0.0)
    await asyncio.sleep(0.1)

    await d.step()

    assert [e.state for e in await outcomes(db)] == ["appealed", "appeal_decided"]
    assert [a.result for a in await activity(db)] == ["retryable", "ok"]
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 1


async def test_a_manual_channel_is_appealed_by_hand(db: Database) -> None:
    """No automated appeal route: the appeal waits for a person (announced `appealed` with
    who asked, their note and the reason), and the platform's answer a practitioner then
    records is the appeal's outcome."""
    eid = await decided(db, None, platform="roblox", platform_reference="RBX-1")
    d = desk(db, {"roblox": MANUAL_CHANNELS["roblox"]()})

    await d.step()

    (appealed,) = await outcomes(db)
    assert (appealed.state, appealed.decision) == ("appealed", "no_violation")
    assert (appealed.actor, appealed.note) == ("key-practitioner-1", NOTE)
    assert (appealed.reason or "").startswith(APPEAL_BY_HAND)
    assert (await escalation(db, eid))["state"] == "appealed"
    (by_hand,) = await activity(db)
    assert by_hand.result == "permanent"
    assert "appeal by hand" in (by_hand.error or "")
    assert await d.step() == 0  # nothing more to ask any platform

    answer = PractitionerCommandV1(
        command_id=uuid.uuid4(),
        case_id=appealed.case_id,
        escalation_id=eid,
        action="platform_decision",
        actor="key-practitioner-2",
        issued_at=utcnow(),
        note="Roblox's safety team removed it on appeal (email of today).",
        decision="removed",
    )
    commands = Commands(polled=lambda _: False, status_interval_s=1.0)
    async with db.pool.acquire() as conn, conn.transaction():
        told, _ = await commands.apply(conn, answer)
        await Outbox(db, KafkaBroker(), "escalator").add(conn, told)
    decided_now = (await outcomes(db))[-1]
    assert (decided_now.state, decided_now.decision, decided_now.overturned) == (
        "appeal_decided",
        "removed",
        True,
    )
    assert (decided_now.actor, decided_now.note) == ("key-practitioner-2", answer.note)
    row = await escalation(db, eid)
    assert (row["state"], row["appeal_overturned"]) == ("appeal_decided", True)
    assert await d.step() == 0


async def test_an_appeal_waits_while_the_platforms_circuit_is_open(
    db: Database, reddit: RedditAdapter, http: aiohttp.ClientSession, simulator: str
) -> None:
    await decided(db, reddit)
    s = Settings(escalation_status_interval_s=0.05, escalation_claim_lease_s=30)
    outbox = Outbox(db, KafkaBroker(), "escalator")
    adapters: dict[str, PlatformAdapter] = {"reddit": reddit}

    assert await AppealDesk(db, outbox, s, adapters.get, lambda: ["reddit"]).step() == 0
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 0

    assert await AppealDesk(db, outbox, s, adapters.get).step() == 1
    assert (await sim_activity(http, simulator, "reddit"))["appeals"] == 1
