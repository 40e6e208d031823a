"""Shared escalations on real PostgreSQL (and the real simulator for the notices): the same
content reported by several cases is escalated once, each case hears every state, a case
linked later hears the states already reached at once, and concurrent linkers make one
escalation."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from faststream.kafka import KafkaBroker

from helpline_escalator.adapters.base import DSA_CATEGORY
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.dispatcher import PlatformWorker, notice_for
from helpline_escalator.links import escalation_id, link_cases
from helpline_escalator.outcomes import Reached, announce
from helpline_shared.db import Database
from helpline_shared.events import CaseTriagedV1, TriagedUrl, derive_id, utcnow
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from tests.escalator_support import (
    clear_escalator,
    module_database,
    module_simulator,
    outcomes,
    quiet_simulator,
)
from tests.infra import Infra

URL = "https://www.tiktok.com/@someone/video/7301234567890123456"


simulator = module_simulator()
db = module_database("helpline_shared_esc")


@pytest.fixture
async def clean(db: Database) -> Database:
    await clear_escalator(db)
    return db


@pytest.fixture
async def worker(clean: Database, simulator: str) -> AsyncIterator[PlatformWorker]:
    async with quiet_simulator(simulator) as http:
        outbox = Outbox(clean, KafkaBroker(), "escalator")
        yield PlatformWorker(TikTokAdapter(http, simulator), clean, outbox, Settings())


def case(
    url: str = URL,
    *,
    route: str = "platform",
    platform: str = "tiktok",
    harm: list[str] | None = None,
    urgency: str = "normal",
    normalized: str | None = None,
    dsa_category: str | None = None,
    reason_code: str | None = None,
) -> CaseTriagedV1:
    case_id = uuid.uuid4()
    norm = normalized or url.lower()
    return CaseTriagedV1.model_validate(
        {
            "event_id": derive_id("triaged", case_id),
            "case_id": case_id,
            "received_at": utcnow(),
            "triaged_at": utcnow(),
            "harm_types": harm or ["bullying_harassment"],
            "urgency": urgency,
            "route": route,
            "rules_fired": [],
            "urls": [
                TriagedUrl.model_validate(
                    {
                        "url_id": derive_id("url", case_id, norm),
                        "url": url,
                        "normalized_url": norm,
                        "platform": platform,
                        "route": route,
                        "dsa_category": dsa_category,
                        "reason_code": reason_code,
                    }
                )
            ],
        }
    )


async def link(db: Database, *cases: CaseTriagedV1) -> Any:
    async with db.pool.acquire() as conn, conn.transaction():
        linked = await link_cases(conn, cases)
        await Outbox(db, KafkaBroker(), "escalator").add(conn, linked.outcomes)
    return linked


async def escalations(db: Database) -> list[Any]:
    return list(await db.pool.fetch("SELECT * FROM escalator.escalations"))


async def test_two_cases_with_the_same_content_share_one_escalation(clean: Database) -> None:
    a = case(harm=["online_reputation"])
    b = case(URL + "#comments", normalized=URL.lower(), harm=["threats_risk_to_life"])
    b = b.model_copy(update={"urgency": "critical"})
    linked = await link(clean, a, b)
    [row] = await escalations(clean)
    assert row["escalation_id"] == escalation_id(a.urls[0]) == escalation_id(b.urls[0])
    assert row["linked_cases"] == 2
    assert row["state"] == "queued"
    assert row["urgency"] == "critical"  # the most urgent case decides
    assert list(row["harm_types"]) == ["threats_risk_to_life", "online_reputation"]
    assert linked.platforms == {"tiktok"}
    links = await clean.pool.fetch("SELECT * FROM escalator.escalation_cases")
    assert {(r["case_id"], r["url"]) for r in links} == {
        (a.case_id, URL),
        (b.case_id, URL + "#comments"),
    }
    assert await outcomes(clean) == []  # nothing reached yet


async def test_redelivery_links_and_announces_nothing_again(clean: Database) -> None:
    a = case(route="manual", platform="unknown", url="https://forum.example.org/t/1")
    await link(clean, a)
    again = await link(clean, a, a)
    assert again.opened == []
    assert again.outcomes == []
    assert [o.state for o in await outcomes(clean)] == ["needs_manual"]
    assert (await escalations(clean))[0]["linked_cases"] == 1


async def test_routes_never_merge(clean: Database) -> None:
    await link(clean, case(), case(route="hotline"))
    assert sorted(r["route"] for r in await escalations(clean)) == ["hotline", "platform"]
    # Even when one case opens both (no per-case uniqueness is left to trip over).
    both = case()
    hotline = both.urls[0].model_copy(update={"route": "hotline", "url_id": uuid.uuid4()})
    await link(clean, both.model_copy(update={"urls": [*both.urls, hotline]}))
    opened = [r for r in await escalations(clean) if r["case_id"] == both.case_id]
    assert len(opened) == 0  # the same content as above: linked, not opened
    links = await clean.pool.fetch(
        "SELECT * FROM escalator.escalation_cases WHERE case_id = $1", both.case_id
    )
    assert len(links) == 2
    await clean.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    await link(clean, both.model_copy(update={"urls": [*both.urls, hotline]}))
    assert len(await escalations(clean)) == 2


async def test_manual_content_is_handled_once_and_a_later_case_hears_it_at_once(
    clean: Database,
) -> None:
    forum = "https://forum.example.org/thread/9"
    a, b = (case(forum, route="manual", platform="unknown") for _ in range(2))
    await link(clean, a)
    await link(clean, b)
    [row] = await escalations(clean)
    assert row["state"] == "needs_manual"
    assert row["linked_cases"] == 2
    events = await outcomes(clean)
    assert [(e.case_id, e.state) for e in events] == [
        (a.case_id, "needs_manual"),
        (b.case_id, "needs_manual"),
    ]
    assert events[1].reason == events[0].reason == "no automated channel for this host"
    assert events[1].occurred_at == events[0].occurred_at  # the same fact, told again
    assert events[1].event_id == derive_id("escalation.outcome", b.urls[0].url_id, "needs_manual")
    assert events[1].linked_cases == 2


async def test_every_case_hears_the_decision_and_a_late_case_at_once(
    worker: PlatformWorker, clean: Database, simulator: str
) -> None:
    db = clean
    a, b = case(), case()
    await link(db, a, b)
    assert await worker.step() == 1
    async with aiohttp.ClientSession() as http, http.get(f"{simulator}/_sim/stats") as r:
        assert (await r.json())["submissions"] == 1
    decided = [(e.case_id, e.state) for e in await outcomes(db)]
    assert sorted(decided) == sorted([(a.case_id, "decided"), (b.case_id, "decided")])

    late = case(harm=["threats_risk_to_life"], urgency="critical")
    linked = await link(db, late)
    assert linked.opened == []
    assert linked.platforms == set()
    [told] = [e for e in await outcomes(db) if e.case_id == late.case_id]
    first = (await outcomes(db))[0]
    assert (told.state, told.decision, told.platform_reference) == (
        "decided",
        first.decision,
        first.platform_reference,
    )
    assert told.url_id == late.urls[0].url_id
    assert told.linked_cases == 3
    [row] = await escalations(db)
    assert row["urgency"] == "normal"  # already sent: a later case changes nothing
    assert row["harm_types"] == ["bullying_harassment"]
    assert await worker.step() == 0  # and nothing is sent again


async def test_a_state_reached_while_a_case_links_is_told_once(clean: Database) -> None:
    """A worker moving the escalation and a case linking at the same moment: the case hears
    the state exactly once, from whichever transaction commits second."""
    a = case()
    await link(clean, a)
    eid = escalation_id(a.urls[0])
    for worker_first in (True, False):
        b = case()
        state = "submitted" if worker_first else "decided"
        w = await clean.pool.acquire()
        try:
            tx = w.transaction()
            await tx.start()
            if worker_first:
                await w.execute(
                    "UPDATE escalator.escalations SET state = $2 WHERE escalation_id = $1",
                    eid,
                    state,
                )
                msgs = await announce(w, [Reached(eid, state, 1, utcnow(), reference="r")])
                linking = asyncio.create_task(link(clean, b))
                await asyncio.sleep(0.3)
                assert not linking.done()  # waits for the worker's row lock
                await Outbox(clean, KafkaBroker(), "escalator").add(w, msgs)
                await tx.commit()
                await linking
            else:
                linking_conn = await clean.pool.acquire()
                try:
                    ltx = linking_conn.transaction()
                    await ltx.start()
                    linked = await link_cases(linking_conn, [b])
                    await Outbox(clean, KafkaBroker(), "escalator").add(
                        linking_conn, linked.outcomes
                    )
                    moving = asyncio.create_task(
                        w.execute(
                            "UPDATE escalator.escalations SET state = $2 WHERE escalation_id = $1",
                            eid,
                            state,
                        )
                    )
                    await asyncio.sleep(0.3)
                    assert not moving.done()  # waits for the linker's row lock
                    await ltx.commit()
                finally:
                    await clean.pool.release(linking_conn)
                await moving
                msgs = await announce(w, [Reached(eid, state, 1, utcnow(), reference="r")])
                await Outbox(clean, KafkaBroker(), "escalator").add(w, msgs)
                await tx.commit()
        finally:
            await clean.pool.release(w)
        told = [e.state for e in await outcomes(clean) if e.case_id == b.case_id]
        assert told.count(state) == 1, (worker_first, told)


async def test_concurrent_linkers_make_one_escalation(db: Database, infra: Infra) -> None:
    await db.pool.execute("TRUNCATE escalator.escalations, escalator.attempts, outbox CASCADE")
    cases = [case() for _ in range(8)]
    await asyncio.gather(*(link(db, c) for c in cases))
    [row] = await escalations(db)
    assert row["linked_cases"] == 8
    assert await db.pool.fetchval("SELECT count(*) FROM escalator.escalation_cases") == 8


async def test_a_waiting_escalation_takes_the_more_severe_case_s_category(
    clean: Database,
) -> None:
    a = case(harm=["online_reputation"], dsa_category="STATEMENT_CATEGORY_X", reason_code="A")
    await link(clean, a)
    b = case(
        harm=["self_harm"],
        urgency="critical",
        dsa_category="STATEMENT_CATEGORY_SELF_HARM",
        reason_code="SUICIDE_SELF_HARM",
    )
    await link(clean, b)
    [row] = await escalations(clean)
    assert (row["urgency"], row["dsa_category"], row["reason_code"]) == (
        "critical",
        "STATEMENT_CATEGORY_SELF_HARM",
        "SUICIDE_SELF_HARM",
    )
    notice = notice_for(row, Settings())
    assert notice.dsa_category == "STATEMENT_CATEGORY_SELF_HARM"
    assert notice.harm_types[0] == "self_harm"
    payload = TikTokAdapter(None, "http://x").payload(notice)  # type: ignore[arg-type]
    assert payload["violation_type"] == "SUICIDE_SELF_HARM"
    assert payload["priority"] == "urgent"
    # A less severe case later keeps what the more severe one set.
    await link(clean, case(harm=["scams"], dsa_category="STATEMENT_CATEGORY_SCAMS_AND_FRAUD"))
    [row] = await escalations(clean)
    assert row["dsa_category"] == "STATEMENT_CATEGORY_SELF_HARM"
    assert row["linked_cases"] == 3


def test_new_harm_types_have_a_dsa_category() -> None:
    assert DSA_CATEGORY["self_harm"] == "STATEMENT_CATEGORY_SELF_HARM"
    assert DSA_CATEGORY["hate"] == "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"
    assert DSA_CATEGORY["scams"] == "STATEMENT_CATEGORY_SCAMS_AND_FRAUD"
    assert DSA_CATEGORY["other"] == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
