"""Re-triage on the escalator as deployed (served app, dedicated Tansu broker, real
PostgreSQL, the simulator): a practitioner's override moving a URL from its platform to
the hotline withdraws the pending notice where the platform allows it (and says the
notice stands where it does not), reports it to the hotline, and tells the case each
step with its own event id; redelivering either decision changes nothing. On PostgreSQL
alone: a notice not sent yet is cancelled at once and never sent, content another case
still reports stays escalated, and a more urgent override raises a waiting notice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.links import link_cases
from helpline_escalator.retriage import NO_WITHDRAWAL, Withdrawals, retriage
from helpline_shared.db import Database
from helpline_shared.events import CaseTriagedV1, EscalationOutcomeV1, derive_id, utcnow
from helpline_shared.outbox import Outbox
from helpline_shared.topics import CASES_TRIAGED, ESCALATION_OUTCOMES
from tests.conftest import opened_database
from tests.infra import Infra
from tests.test_escalator_commands import (
    Stack,
    activity,
    escalator_stack,
    eventually,
    outcomes,
    row,
)

WITHDRAWN = "withdrawn at the platform after a re-triage changed the route"


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    async with escalator_stack(infra, tmp_dir) as s:
        yield s


def decision(
    url: str,
    platform: str,
    route: str,
    *,
    case_id: uuid.UUID | None = None,
    revision: int = 1,
    urgency: str = "normal",
    harm: str = "bullying_harassment",
) -> CaseTriagedV1:
    case_id = case_id or uuid.uuid4()
    now = utcnow()
    return CaseTriagedV1.model_validate(
        {
            "event_id": derive_id("triaged", case_id, revision),
            "case_id": case_id,
            "received_at": now,
            "triaged_at": now,
            "harm_types": [harm],
            "urgency": urgency,
            "route": route,
            "rules_fired": [],
            "revision": revision,
            "supersedes": derive_id("triaged", case_id, revision - 1) if revision > 1 else None,
            "overridden_by": "key-practitioner-1" if revision > 1 else None,
            "override_note": "it is a child" if revision > 1 else None,
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


def to_hotline(first: CaseTriagedV1) -> CaseTriagedV1:
    url = first.urls[0]
    return decision(
        url.url,
        url.platform,
        "hotline",
        case_id=first.case_id,
        revision=2,
        urgency="critical",
        harm="child_sexual_imagery",
    )


async def sim_stats(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.simulator}/_sim/stats") as r:
        return dict(await r.json())


async def pending_decisions(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        r = await http.post(
            f"{stack.simulator}/_sim/config",
            json={"decision_delay_ms": 600_000, "error_rate": 0, "rate_limit_rate": 0},
        )
        assert r.status == 200


async def submitted_on_platform(stack: Stack, case: CaseTriagedV1) -> Any:
    await stack.publish(CASES_TRIAGED.name, case.case_id, case)

    async def submitted() -> Any:
        return await stack.db.pool.fetchrow(
            """SELECT e.* FROM escalator.escalations e
               JOIN escalator.escalation_cases l USING (escalation_id)
               WHERE l.case_id = $1 AND e.state = 'submitted'""",
            case.case_id,
        )

    return await eventually(submitted, "the platform notice submitted")


async def withdrawn_and_rerouted(stack: Stack, case: CaseTriagedV1, old: uuid.UUID) -> Any:
    async def done() -> Any:
        gone = await row(stack, old)
        hotline = await stack.db.pool.fetchrow(
            """SELECT e.* FROM escalator.escalations e
               JOIN escalator.escalation_cases l USING (escalation_id)
               WHERE l.case_id = $1 AND l.unlinked_at IS NULL AND e.route = 'hotline'
                 AND e.state = 'submitted'""",
            case.case_id,
        )
        return (gone, hotline) if gone["state"] == "withdrawn" and hotline else None

    return await eventually(done, "the notice withdrawn and the URL on the hotline route")


async def test_a_pending_platform_notice_moved_to_the_hotline_is_withdrawn_and_reported(
    stack: Stack,
) -> None:
    await pending_decisions(stack)
    first = decision("https://www.tiktok.com/@c/video/300003", "tiktok", "platform")
    old = (await submitted_on_platform(stack, first))["escalation_id"]
    override = to_hotline(first)
    await stack.publish(CASES_TRIAGED.name, first.case_id, override)
    gone, hotline = await withdrawn_and_rerouted(stack, first, old)
    assert gone["reason"] == WITHDRAWN
    stats = await sim_stats(stack)
    tiktok = stats["platform_activity"]["tiktok"]
    assert (tiktok["notices"], tiktok["withdrawals"]) == (1, 1)
    assert stats["hotline"]["per_client_reference"][str(hotline["escalation_id"])] == 1
    told = await outcomes(stack, first)
    # The hotline's needs_manual comes with the move; the withdrawal loop and the hotline
    # worker then tell theirs in whichever order they finish.
    assert [(o.escalation_id, o.state) for o in told[:2]] == [
        (old, "submitted"),
        (hotline["escalation_id"], "needs_manual"),
    ]
    assert {(o.escalation_id, o.state) for o in told[2:]} == {
        (old, "withdrawn"),
        (hotline["escalation_id"], "submitted"),
    }
    assert len(told) == 4
    assert [o.reason for o in told if o.state == "withdrawn"] == [WITHDRAWN]
    assert len({o.event_id for o in told}) == 4
    assert {o.route for o in told if o.escalation_id != old} == {"hotline"}
    acts = await activity(stack, old)
    # The notice, any status checks made before the override, then the withdrawal.
    assert (acts[0].kind, acts[-1].kind, acts[-1].result) == ("submit", "withdrawal", "ok")
    assert {a.kind for a in acts[1:-1]} <= {"status"}
    # Each call the platform answered says with which HTTP status.
    answered = [a.http_status for a in acts]
    assert [s for s in answered if s is not None and 200 <= s < 300] == answered, answered

    # Both decisions redelivered: nothing moves, nothing is sent or told again.
    await stack.publish(CASES_TRIAGED.name, first.case_id, first)
    await stack.publish(CASES_TRIAGED.name, first.case_id, override)
    # A third decision, same route, after them on the case's partition: once it is
    # applied the redeliveries were processed.
    marker = override.model_copy(
        update={"revision": 3, "event_id": derive_id("triaged", first.case_id, 3)}
    )
    await stack.publish(CASES_TRIAGED.name, first.case_id, marker)

    async def marker_applied() -> bool:
        return bool(
            await stack.db.pool.fetchval(
                """SELECT revision FROM escalator.escalation_cases
                   WHERE case_id = $1 AND unlinked_at IS NULL""",
                first.case_id,
            )
            == 3
        )

    await eventually(marker_applied, "the decision after the redeliveries applied")
    links = await stack.db.pool.fetch(
        """SELECT escalation_id, unlinked_at IS NULL AS current, revision
           FROM escalator.escalation_cases WHERE case_id = $1""",
        first.case_id,
    )
    assert {(r["escalation_id"], r["current"], r["revision"]) for r in links} == {
        (old, False, 1),
        (hotline["escalation_id"], True, 3),
    }
    again = await sim_stats(stack)
    assert again["platform_activity"]["tiktok"] == tiktok
    assert again["hotline"]["reports"] == stats["hotline"]["reports"]
    assert [o.event_id for o in await outcomes(stack, first)] == [o.event_id for o in told]


def marker_id(case: CaseTriagedV1) -> uuid.UUID:
    u = case.urls[0]
    return derive_id("escalation", u.route, u.platform, u.normalized_url)


async def test_a_platform_without_withdrawal_is_told_the_notice_stands(stack: Stack) -> None:
    await pending_decisions(stack)
    first = decision("https://www.snapchat.com/add/someone4", "snapchat", "platform")
    old = (await submitted_on_platform(stack, first))["escalation_id"]
    await stack.publish(CASES_TRIAGED.name, first.case_id, to_hotline(first))
    gone, _ = await withdrawn_and_rerouted(stack, first, old)
    assert gone["reason"] == NO_WITHDRAWAL
    withdrawn = [o for o in await outcomes(stack, first) if o.state == "withdrawn"]
    assert [o.reason for o in withdrawn] == [NO_WITHDRAWAL]
    assert (await sim_stats(stack))["platform_activity"]["snapchat"]["withdrawals"] == 0


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_esc_retriage") as database:
        yield database


async def apply(db: Database, *cases: CaseTriagedV1) -> list[EscalationOutcomeV1]:
    async with db.pool.acquire() as conn, conn.transaction():
        moved = await retriage(conn, [c for c in cases if c.revision > 1])
        linked = await link_cases(conn, cases)
        await Outbox(db, KafkaBroker(), "escalator").add(conn, moved.outcomes + linked.outcomes)
    rows = await db.pool.fetch(
        "SELECT value FROM outbox WHERE topic = $1 ORDER BY seq", ESCALATION_OUTCOMES.name
    )
    return [EscalationOutcomeV1.model_validate_json(r["value"]) for r in rows]


async def test_a_notice_not_sent_yet_is_cancelled_at_once_and_never_claimed(db: Database) -> None:
    first = decision("https://www.tiktok.com/@d/video/400004", "tiktok", "platform")
    await apply(db, first)
    old = marker_id(first)
    told = await apply(db, to_hotline(first))
    gone = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", old
    )
    assert gone["state"] == "withdrawn"
    assert (
        gone["reason"] == "re-triage moved the case to the hotline route before anything was sent"
    )
    assert [(o.escalation_id == old, o.state) for o in told] == [
        (True, "withdrawn"),
        (False, "needs_manual"),
    ]
    assert told[0].case_id == first.case_id
    attempts = await db.pool.fetchval("SELECT count(*) FROM escalator.attempts")
    assert attempts == 0


async def test_content_another_case_still_reports_stays_escalated(db: Database) -> None:
    url = "https://www.tiktok.com/@e/video/500005"
    a = decision(url, "tiktok", "platform")
    b = decision(url, "tiktok", "platform")
    await apply(db, a, b)
    old = marker_id(a)
    told = await apply(db, to_hotline(a))
    kept = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", old
    )
    assert (kept["state"], kept["linked_cases"], kept["withdraw_requested_at"]) == (
        "queued",
        1,
        None,
    )
    assert "withdrawn" not in {o.state for o in told}
    current = await db.pool.fetch(
        """SELECT case_id FROM escalator.escalation_cases
           WHERE escalation_id = $1 AND unlinked_at IS NULL""",
        old,
    )
    assert [r["case_id"] for r in current] == [b.case_id]


async def test_a_more_urgent_override_on_the_same_route_raises_a_waiting_notice(
    db: Database,
) -> None:
    first = decision("https://www.tiktok.com/@f/video/600006", "tiktok", "platform")
    await apply(db, first)
    raised = decision(
        first.urls[0].url,
        "tiktok",
        "platform",
        case_id=first.case_id,
        revision=2,
        urgency="critical",
        harm="threats_risk_to_life",
    )
    await apply(db, raised)
    esc = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", marker_id(first)
    )
    assert (esc["state"], esc["urgency"]) == ("queued", "critical")
    assert esc["harm_types"][0] == "threats_risk_to_life"
    older = decision(
        first.urls[0].url,
        "tiktok",
        "hotline",
        case_id=first.case_id,
        revision=2,
    )
    await apply(db, older)  # not newer than the current link: nothing moves
    link = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalation_cases WHERE case_id = $1", first.case_id
    )
    assert (link["escalation_id"], link["unlinked_at"]) == (marker_id(first), None)


async def test_content_reported_again_after_its_withdrawal_is_escalated_again(
    db: Database,
) -> None:
    url = "https://www.tiktok.com/@g/video/700007"
    first = decision(url, "tiktok", "platform")
    await apply(db, first)
    await apply(db, to_hotline(first))  # cancelled before it was sent
    later = decision(url, "tiktok", "platform")
    told = await apply(db, later)
    esc = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", marker_id(first)
    )
    assert (esc["state"], esc["linked_cases"], esc["withdraw_requested_at"]) == ("queued", 1, None)
    # The new case hears the content's history so far; the notice goes out for it.
    assert [o.state for o in told if o.case_id == later.case_id] == ["withdrawn"]
    # Sent and withdrawn at the platform: a person decides, nothing is re-sent by itself.
    await db.pool.execute(
        """UPDATE escalator.escalations SET state = 'withdrawn', platform_reference = 'TT-9',
               withdraw_requested_at = now()
           WHERE escalation_id = $1""",
        marker_id(first),
    )
    third = decision(url, "tiktok", "platform")
    told = await apply(db, third)
    esc = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", marker_id(first)
    )
    assert (esc["state"], esc["platform_reference"], esc["linked_cases"]) == (
        "needs_manual",
        "TT-9",
        2,
    )
    reopened = [
        o for o in told if o.state == "needs_manual" and o.escalation_id == marker_id(first)
    ]
    assert {o.case_id for o in reopened} == {later.case_id, third.case_id}
    assert all(o.reason and o.reason.startswith("reported again after") for o in reopened)


async def test_a_case_joining_before_the_withdrawal_keeps_the_notice(db: Database) -> None:
    url = "https://www.tiktok.com/@h/video/800008"
    first = decision(url, "tiktok", "platform")
    await apply(db, first)
    eid = marker_id(first)
    await db.pool.execute(
        """UPDATE escalator.escalations SET state = 'submitted', platform_reference = 'TT-8'
           WHERE escalation_id = $1""",
        eid,
    )
    await apply(db, to_hotline(first))
    marked = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
    )
    assert (marked["state"], marked["withdraw_requested_at"] is not None) == ("submitted", True)
    await apply(db, decision(url, "tiktok", "platform"))  # reported again, not withdrawn yet
    kept = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
    )
    assert (kept["state"], kept["withdraw_requested_at"], kept["linked_cases"]) == (
        "submitted",
        None,
        1,
    )
    loop = Withdrawals(
        db,
        Outbox(db, KafkaBroker(), "escalator"),
        lambda row: None,
        lease_s=30,
        retry_s=1,
        call_timeout_s=2,
        idle_s=1,
    )
    assert await loop.step() == 0  # nothing left to withdraw
