"""Metrics totals on real PostgreSQL: exact under redelivery, duplicates and out-of-order
topics; equal to counting the events by hand."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from helpline_metrics import projection
from helpline_metrics.totals import totals
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    RejectionReason,
    ReportRejectedV1,
    TriagedUrl,
    derive_id,
    utcnow,
)
from tests.conftest import fresh_database
from tests.infra import Infra


@pytest.fixture
async def conn(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(await fresh_database(infra, "helpline_metrics"))
    try:
        yield c
    finally:
        await c.close()


def scenario(seed: int) -> list[Any]:
    rng = random.Random(seed)
    events: list[Any] = []
    for n in range(40):
        case_id = uuid.uuid4()
        urls = [
            TriagedUrl(
                url_id=uuid.uuid4(),
                url=f"https://x/{n}/{k}",
                normalized_url=f"https://x/{n}/{k}",
                platform=rng.choice(["tiktok", "tiktok", "x", "unknown"]),
                route="platform",
            )
            for k in range(rng.randint(1, 3))
        ]
        harm = sorted(
            set(rng.sample(["online_reputation", "bullying_harassment", "impersonation"], 2))
        )
        events.append(
            CaseTriagedV1(
                event_id=derive_id("t", case_id),
                case_id=case_id,
                received_at=utcnow(),
                triaged_at=utcnow(),
                harm_types=harm,
                urgency="normal",
                route="platform",
                rules_fired=[],
                urls=urls,
            )
        )  # type: ignore[arg-type]
        for u in urls:

            def outcome(
                state: str,
                decision: str | None = None,
                u: TriagedUrl = u,
                case_id: uuid.UUID = case_id,
            ) -> EscalationOutcomeV1:
                return EscalationOutcomeV1(
                    event_id=derive_id("o", u.url_id, state),
                    case_id=case_id,
                    escalation_id=u.url_id,
                    platform=u.platform,
                    url=u.url,
                    state=state,
                    decision=decision,
                    attempts=1,
                    received_at=utcnow(),
                    occurred_at=utcnow(),
                )  # type: ignore[arg-type]

            if u.platform == "unknown":
                events.append(outcome("needs_manual"))
                continue
            events.append(outcome("submitted"))
            roll = rng.random()
            if roll < 0.7:
                events.append(outcome("decided", "removed"))
            elif roll < 0.8:
                events.append(outcome("decided", "no_violation"))
            elif roll < 0.9:
                events.append(outcome("failed"))
    events.append(
        ReportRejectedV1(
            event_id=uuid.uuid4(),
            rejected_at=utcnow(),
            via="kafka",
            reasons=[RejectionReason(loc="", message="bad", type="json_invalid")],
            original_base64="",
        )
    )
    return events


def by_hand(events: list[Any]) -> dict[str, Any]:
    final: dict[uuid.UUID, tuple[str, str | None]] = {}
    for e in events:
        if isinstance(e, CaseTriagedV1):
            for u in e.urls:
                final.setdefault(u.url_id, ("queued", None))
    for e in events:
        if isinstance(e, EscalationOutcomeV1):
            rank = projection.STATE_RANK
            if rank[e.state] > rank[final[e.escalation_id][0]]:
                final[e.escalation_id] = (e.state, e.decision)
    states: dict[str, int] = {}
    decisions: dict[str, int] = {}
    for state, decision in final.values():
        states[state] = states.get(state, 0) + 1
        if decision:
            decisions[decision] = decisions.get(decision, 0) + 1
    cases = [e for e in events if isinstance(e, CaseTriagedV1)]
    return {
        "cases": len(cases),
        "urls": sum(len(c.urls) for c in cases),
        "by_state": dict(sorted(states.items())),
        "decisions": dict(sorted(decisions.items())),
    }


async def fold(conn: asyncpg.Connection, events: list[Any], batch: int) -> dict[str, Any]:
    for i in range(0, len(events), batch):
        async with conn.transaction():
            await projection.apply(conn, events[i : i + batch])
    t = await totals(conn)
    return {
        "cases": t["cases"],
        "urls": t["urls"],
        "by_state": t["escalations"]["by_state"],
        "decisions": t["decisions"],
    }


async def test_totals_equal_the_events_counted_by_hand(conn: asyncpg.Connection) -> None:
    events = scenario(1)
    assert await fold(conn, events, 25) == by_hand(events)
    t = await totals(conn)
    assert t["reports_rejected"] == 1
    removed = by_hand(events)["decisions"].get("removed", 0)
    decided = by_hand(events)["by_state"].get("decided", 0)
    assert t["takedowns"] == removed
    assert t["takedown_rate"] == round(removed / decided, 4)


async def test_redelivery_and_replay_change_nothing(conn: asyncpg.Connection) -> None:
    events = scenario(2)
    first = await fold(conn, events, 30)
    again = await fold(conn, events[10:70] + events, 17)  # partial batch redelivered, then all
    assert again == first == by_hand(events)


async def test_any_order_gives_the_same_totals(conn: asyncpg.Connection) -> None:
    events = scenario(3)
    shuffled = events[:]
    random.Random(4).shuffle(shuffled)
    duplicated = shuffled + shuffled[::3]  # duplicates inside the same batches too
    assert await fold(conn, duplicated, 1000) == by_hand(events)


async def test_two_replicas_folding_at_once_stay_exact(infra: Infra) -> None:
    """Like two metrics replicas: one gets the triaged topic, the other the outcomes."""
    url = await fresh_database(infra, "helpline_metrics_replicas")
    events = scenario(5)
    triaged = [e for e in events if isinstance(e, CaseTriagedV1)]
    outcomes = [e for e in events if not isinstance(e, CaseTriagedV1)]
    a, b = await asyncpg.connect(url), await asyncpg.connect(url)
    try:
        await asyncio.gather(fold(a, triaged, 3), fold(b, outcomes, 5))
        assert await fold(a, [], 1) == by_hand(events)
    finally:
        await a.close()
        await b.close()


async def test_mean_time_to_decision_per_platform(conn: asyncpg.Connection) -> None:
    start = utcnow()

    def decided(hours: float, platform: str) -> EscalationOutcomeV1:
        eid = uuid.uuid4()
        return EscalationOutcomeV1(
            event_id=derive_id("o", eid, "decided"),
            case_id=uuid.uuid4(),
            escalation_id=eid,
            platform=platform,
            url="https://x",
            state="decided",
            decision="removed",
            attempts=1,
            received_at=start,
            occurred_at=start + timedelta(hours=hours),
        )

    events = [decided(2, "tiktok"), decided(4, "tiktok"), decided(10, "x")]
    await fold(conn, events + events, 2)  # redelivered: counted once
    t = await totals(conn)
    assert t["time_to_decision_by_platform"] == {
        "tiktok": {"decided": 2, "mean_hours": 3.0},
        "x": {"decided": 1, "mean_hours": 10.0},
    }


def shared_content(cases: int, final: str, decision: str | None) -> list[Any]:
    """`cases` cases reporting one content: each triaged, each told submitted then `final`
    (the same facts, as the escalator tells every linked case)."""
    eid = uuid.uuid4()
    start = utcnow()
    events: list[Any] = []
    for _ in range(cases):
        case_id = uuid.uuid4()
        url = TriagedUrl(
            url_id=derive_id("url", case_id),
            url="https://www.tiktok.com/@a/video/1?utm_source=x",
            normalized_url="https://www.tiktok.com/@a/video/1",
            platform="tiktok",
            route="platform",
        )
        events.append(
            CaseTriagedV1(
                event_id=derive_id("t", case_id),
                case_id=case_id,
                received_at=start,
                triaged_at=start,
                harm_types=["bullying_harassment"],
                urgency="normal",
                route="platform",
                rules_fired=[],
                urls=[url],
            )
        )
        for state, at in (("submitted", 1), (final, 2)):
            events.append(
                EscalationOutcomeV1(
                    event_id=derive_id("escalation.outcome", url.url_id, state),
                    case_id=case_id,
                    escalation_id=eid,
                    url_id=url.url_id,
                    platform="tiktok",
                    url=url.url,
                    state=state,  # type: ignore[arg-type]
                    decision=decision if state == "decided" else None,
                    attempts=1,
                    received_at=start,
                    first_received_at=start,
                    occurred_at=start + timedelta(hours=at),
                )
            )
    return events


async def test_shared_content_is_counted_once_and_each_report_apart(
    conn: asyncpg.Connection,
) -> None:
    events = shared_content(3, "decided", "removed") + shared_content(2, "needs_manual", None)
    shuffled = events[:]
    random.Random(9).shuffle(shuffled)
    await fold(conn, shuffled + shuffled[::2], 4)  # any order, redelivered
    t = await totals(conn)
    assert t["escalations"]["total"] == 2
    assert t["escalations"]["by_state"] == {"decided": 1, "needs_manual": 1}
    assert t["urls_escalated"] == 2  # both were sent; one then waited for a person
    assert t["decisions"] == {"removed": 1}
    assert t["takedowns"] == 1
    assert t["takedown_rate"] == 1.0
    assert t["urls"] == 5
    assert t["url_reports"] == {
        "total": 5,
        "by_state": {"decided": 3, "needs_manual": 2},
        "takedowns": 3,
    }
    assert t["time_to_decision_by_platform"] == {"tiktok": {"decided": 1, "mean_hours": 2.0}}


async def test_reports_wait_queued_until_their_case_hears(conn: asyncpg.Connection) -> None:
    events = shared_content(2, "decided", "no_violation")
    triaged = [e for e in events if isinstance(e, CaseTriagedV1)]
    await fold(conn, triaged, 10)
    t = await totals(conn)
    assert t["url_reports"]["by_state"] == {"queued": 2}
    assert t["escalations"]["total"] == 0
    assert t["urls_escalated"] == 0
    await fold(conn, events, 10)
    t = await totals(conn)
    assert t["url_reports"]["by_state"] == {"decided": 2}
    assert t["escalations"]["by_state"] == {"decided": 1}
    assert t["takedown_rate"] == 0.0
