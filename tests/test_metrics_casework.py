"""Metrics counts casework's states on real PostgreSQL (and, end to end, from the real
broker): breaches per platform, cases closed as advice only, appeals and overturned
decisions, withdrawn notices, decisions a practitioner recorded, and re-triaged cases; in
any order, redelivered, and the same after `helpline metrics rebuild`."""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from rich.console import Console

from helpline_cli.metrics_cli import rebuild_command
from helpline_escalator import outcomes
from helpline_metrics import projection
from helpline_metrics.app import create_app
from helpline_metrics.prometheus import totals_renderer
from helpline_metrics.report import annual_report
from helpline_metrics.report_render import render
from helpline_metrics.totals import totals
from helpline_shared import cloudevents
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    TriagedUrl,
    derive_id,
)
from helpline_shared.kafka import OutgoingMessage, create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, ESCALATION_OUTCOMES
from helpline_triage import usecase as triage_usecase
from tests.conftest import fresh_database, opened_database
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_metrics_provenance import publish_all_of

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
Event = CaseTriagedV1 | EscalationOutcomeV1


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_metrics_casework") as database:
        yield database


@dataclass
class Case:
    """One case with one URL and the events metrics hears about it."""

    platform: str = "tiktok"
    urgency: str = "normal"
    harm_types: list[str] = field(default_factory=lambda: ["bullying_harassment"])
    case_id: uuid.UUID = field(default_factory=uuid.uuid4)
    escalation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[Event] = field(default_factory=list)

    @property
    def url(self) -> TriagedUrl:
        return TriagedUrl(
            url_id=derive_id("url", self.case_id),
            url=f"https://{self.platform}.example/{self.case_id}",
            normalized_url=f"https://{self.platform}.example/{self.case_id}",
            platform=self.platform,
            route="platform",
        )

    def triaged(self, revision: int = 1, **changes: Any) -> Case:
        previous = [e for e in self.events if isinstance(e, CaseTriagedV1)]
        fields: dict[str, Any] = {
            "event_id": derive_id("case.triaged", self.case_id, revision),
            "case_id": self.case_id,
            "received_at": T0,
            "triaged_at": T0 + timedelta(minutes=revision),
            "harm_types": self.harm_types,
            "urgency": self.urgency,
            "route": "platform",
            "rules_fired": [],
            "urls": [self.url],
            "decision_due_at": T0 + timedelta(hours=72),
            "revision": revision,
            "supersedes": previous[-1].event_id if previous else None,
        }
        self.events.append(CaseTriagedV1.model_validate(fields | changes))
        return self

    def state(
        self, state: str, hours: float, escalation_id: uuid.UUID | None = None, **facts: Any
    ) -> Case:
        eid = escalation_id or self.escalation_id
        self.events.append(
            EscalationOutcomeV1.model_validate(
                {
                    "event_id": derive_id("escalation.outcome", self.url.url_id, state, eid),
                    "case_id": self.case_id,
                    "escalation_id": eid,
                    "url_id": self.url.url_id,
                    "platform": self.platform,
                    "url": self.url.url,
                    "state": state,
                    "attempts": 1,
                    "received_at": T0,
                    "first_received_at": T0,
                    "occurred_at": T0 + timedelta(hours=hours),
                }
                | facts
            )
        )
        return self


async def fold(db: Database, events: list[Event], batch: int = 3) -> dict[str, Any]:
    for i in range(0, len(events), batch):
        async with db.pool.acquire() as conn, conn.transaction():
            await projection.apply(conn, events[i : i + batch])
    async with db.pool.acquire() as conn:
        t = await totals(conn)
    t.pop("as_of")
    for platform in t["open_escalations"].values():  # ages move with the clock
        platform.pop("oldest_age_hours")
        platform.pop("median_age_hours")
    return t


async def test_a_breach_is_counted_per_platform_and_the_escalation_stays_open(
    db: Database,
) -> None:
    late = Case("tiktok").triaged().state("submitted", 1).state("breached", 73, followups=0)
    other = Case("x").triaged().state("submitted", 1).state("breached", 80)
    again = Case("tiktok").triaged().state("submitted", 1)
    events = late.events + other.events + again.events
    t = await fold(db, events + events)  # redelivered: once
    assert t["breaches"] == {"total": 2, "by_platform": {"tiktok": 1, "x": 1}}
    assert t["breaches_by_platform"] == {"tiktok": 1, "x": 1}
    assert t["escalations"]["by_state"] == {"submitted": 3}
    assert t["open_escalations"]["tiktok"]["open"] == 2
    text = (await totals_renderer(db)()).decode()
    assert 'helpline_deadline_breaches_total{platform="tiktok"} 1.0' in text
    assert 'helpline_deadline_breaches_total{platform="x"} 1.0' in text

    # The platform decides late: still one breach, and no longer open.
    t = await fold(db, late.state("decided", 90, decision="removed").events[-1:])
    assert t["breaches"]["total"] == 2
    assert t["decisions"] == {"removed": 1}
    assert t["open_escalations"]["tiktok"]["open"] == 1


async def test_closed_as_advice_only_is_no_longer_open_and_no_decision(db: Database) -> None:
    case = Case("unknown").triaged().state("needs_manual", 0.1)
    case.state("closed", 5, actor="key-1", note="Advice given to the school.")
    t = await fold(db, case.events)
    assert t["closed_advice_only"] == 1
    assert t["escalations"]["by_state"] == {"closed": 1}
    assert t["decisions"] == {}
    assert t["takedown_rate"] is None
    assert t["open_escalations"] == {}
    assert t["manual_decisions"] == 0


async def test_an_overturned_appeal_replaces_the_decision(db: Database) -> None:
    overturned = Case("tiktok").triaged().state("submitted", 0.1)
    overturned.state("decided", 10, decision="no_violation")
    overturned.state("appealed", 20, actor="key-1", note="It is plainly bullying.")
    upheld = Case("youtube").triaged().state("submitted", 0.1)
    upheld.state("decided", 4, decision="no_violation")
    upheld.state("appealed", 5, actor="key-1", note="Please look again.")

    t = await fold(db, overturned.events + upheld.events)
    assert t["appeals"] == 2
    assert t["overturned"] == 0
    assert t["decisions"] == {"no_violation": 2}  # the decision stands while appealed
    assert t["escalations"]["by_state"] == {"appealed": 2}
    assert t["takedown_rate"] == 0.0

    overturned.state("appeal_decided", 30, decision="removed", overturned=True)
    upheld.state("appeal_decided", 9, decision="no_violation", overturned=False)
    t = await fold(db, overturned.events[-1:] + upheld.events[-1:])
    assert t["appeals"] == 2
    assert t["overturned"] == 1
    assert t["decisions"] == {"no_violation": 1, "removed": 1}
    assert t["takedowns"] == 1
    assert t["takedown_rate"] == 0.5
    assert t["takedowns_by_platform"] == {"tiktok": 1, "youtube": 0}
    assert t["url_reports"]["takedowns"] == 1
    # Time to decision is to the first decision, not the appeal's.
    assert t["time_to_decision"]["tiktok"]["median_seconds"] == 10 * 3600
    assert t["time_to_decision_by_platform"]["tiktok"] == {"decided": 1, "mean_hours": 10.0}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_withdrawn_notice_is_no_longer_open_and_the_report_follows_the_new_route(
    db: Database, seed: int
) -> None:
    case = Case("tiktok").triaged().state("submitted", 0.1)
    case.triaged(2, route="hotline", urgency="critical", harm_types=["child_sexual_imagery"])
    case.state("submitted", 2, escalation_id=uuid.uuid4())
    case.state("withdrawn", 3, note="moved to the hotline")
    events = case.events[:]
    random.Random(seed).shuffle(events)  # in any order
    t = await fold(db, events, batch=1)
    assert t["escalations"]["by_state"] == {"submitted": 1, "withdrawn": 1}
    assert t["url_reports"]["by_state"] == {"submitted": 1}
    assert t["decisions"] == {}
    assert t["open_escalations"]["tiktok"]["open"] == 1  # the hotline's, not the withdrawn one
    assert t["cases"] == 1
    assert t["cases_by_urgency"] == {"critical": 1}
    assert t["cases_by_harm_type"] == {"child_sexual_imagery": 1}


async def test_a_practitioners_decision_counts_like_any_and_as_manual(db: Database) -> None:
    case = Case("unknown").triaged().state("needs_manual", 0.1)
    case.state("submitted", 2, actor="key-1", platform_reference="REF-1", note="Sent by hand.")
    t = await fold(db, case.events)
    assert t["escalations"]["by_state"] == {"submitted": 1}  # escalated by hand
    case.state("decided", 26, decision="removed", actor="key-1", note="The platform replied.")
    machine = (
        Case("tiktok").triaged().state("submitted", 0.1).state("decided", 1, decision="removed")
    )
    t = await fold(db, case.events[-1:] + machine.events)
    assert t["manual_decisions"] == 1
    assert t["decisions"] == {"removed": 2}
    assert t["takedowns"] == 2
    assert t["decisions_by_platform"] == {"tiktok": {"removed": 1}, "unknown": {"removed": 1}}
    assert t["time_to_decision_by_platform"]["unknown"] == {"decided": 1, "mean_hours": 26.0}


async def test_a_retriaged_case_is_counted_once_with_its_latest_decision(infra: Infra) -> None:
    case = Case("tiktok", "normal", ["bullying_harassment"]).triaged()
    case.triaged(
        2,
        urgency="critical",
        harm_types=["child_sexual_imagery", "bullying_harassment"],
        decision_due_at=T0 + timedelta(hours=24),
    )
    newer_first = list(reversed(case.events))
    for events in (case.events, newer_first):
        async with opened_database(infra, "helpline_metrics_retriaged") as other:
            t = await fold(other, events + events[:1], batch=1)
            assert t["cases"] == 1
            assert t["urls"] == 1
            assert t["cases_by_urgency"] == {"critical": 1}
            assert t["cases_by_harm_type"] == {"bullying_harassment": 1, "child_sexual_imagery": 1}
            assert t["cases_by_platform"] == {"tiktok": {"cases": 1, "share": 1.0}}
            async with other.pool.acquire() as conn:
                row = await conn.fetchrow("SELECT revision, decision_due_at FROM metrics.cases")
            assert row is not None
            assert (row["revision"], row["decision_due_at"]) == (2, T0 + timedelta(hours=24))


def everything() -> list[Event]:
    """Every casework state, for several platforms and cases."""
    events: list[Event] = []
    for n, platform in enumerate(["tiktok", "x", "youtube", "tiktok"]):
        breach = Case(platform).triaged().state("submitted", 0.1).state("breached", 73 + n)
        appeal = Case(platform).triaged().state("submitted", 0.1)
        appeal.state("decided", 3 + n, decision="no_violation").state("appealed", 9 + n)
        appeal.state("appeal_decided", 12, decision="removed" if n % 2 else "no_violation")
        appeal.events[-1] = appeal.events[-1].model_copy(update={"overturned": bool(n % 2)})
        closed = Case("unknown").triaged().state("needs_manual", 0.1).state("closed", 4)
        manual = Case("unknown").triaged().state("needs_manual", 0.1)
        manual.state("submitted", 1, actor="key-1").state(
            "decided", 30 + n, decision="disabled", actor="key-1"
        )
        moved = Case(platform).triaged().state("submitted", 0.1)
        moved.triaged(2, route="hotline", urgency="critical", harm_types=["child_sexual_imagery"])
        moved.state("submitted", 2, escalation_id=uuid.uuid4()).state("withdrawn", 3)
        for c in (breach, appeal, closed, manual, moved):
            events += c.events
    return events


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
async def test_any_order_gives_the_same_casework_figures(
    db: Database, infra: Infra, seed: int
) -> None:
    events = everything()
    in_order = await fold(db, events, batch=7)
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)
    async with opened_database(infra, "helpline_metrics_casework_shuffled") as other:
        assert await fold(other, shuffled + shuffled[::4], batch=5) == in_order
    assert in_order["breaches"]["total"] == 4
    assert in_order["appeals"] == 4
    assert in_order["overturned"] == 2
    assert in_order["closed_advice_only"] == 4
    assert in_order["manual_decisions"] == 4
    assert in_order["escalations"]["by_state"]["withdrawn"] == 4
    assert in_order["cases"] == 20


def message(e: Event) -> OutgoingMessage:
    if isinstance(e, CaseTriagedV1):
        return cloudevents.event_message(
            CASES_TRIAGED.name,
            e,
            event_id=e.event_id,
            key=e.case_id,
            type_="helpline.case.triaged.v1",
            source=triage_usecase.SOURCE,
            time=e.triaged_at,
        )
    return cloudevents.event_message(
        ESCALATION_OUTCOMES.name,
        e,
        event_id=e.event_id,
        key=e.case_id,
        type_=f"helpline.escalation.{e.state}.v1",
        source=outcomes.SOURCE,
        time=e.occurred_at,
    )


async def counted(url: str, events: int, timeout_s: float = 60) -> None:
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + timeout_s
        while await conn.fetchval("SELECT count(*) FROM metrics.inbox") < events:
            assert time.monotonic() < deadline, "metrics never counted every event"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def read_totals(url: str) -> dict[str, Any]:
    """The totals and the year's report, as `GET /v1/totals` and `GET /v1/report` give them."""
    conn = await asyncpg.connect(url)
    try:
        t = await totals(conn)
        t["report"] = await annual_report(conn, T0.year)
        t["report_csv"] = render(t["report"], "csv")
    finally:
        await conn.close()
    t.pop("as_of")
    for platform in t["open_escalations"].values():
        platform.pop("oldest_age_hours")
        platform.pop("median_age_hours")
    return t


async def test_the_service_counts_them_from_the_broker_and_a_rebuild_gives_the_same(
    infra: Infra, tmp_path: Path
) -> None:
    with dedicated_broker(infra, tmp_path) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_metrics_casework_rebuild"),
        )
        database_url = settings.database_url or ""
        await create_topics(settings)
        events = everything()
        async with served(create_app(settings)) as url:
            await publish_all_of(settings, [message(e) for e in events])
            await publish_all_of(settings, [message(e) for e in events[::3]])  # redelivered
            await counted(database_url, len(events))
            running = await read_totals(database_url)
            async with httpx.AsyncClient(base_url=url) as client:
                exposed = (await client.get("/metrics")).text
        assert running["breaches"]["total"] == 4
        assert running["overturned"] == 2
        assert running["manual_decisions"] == 4
        assert running["closed_advice_only"] == 4
        assert running["cases"] == 20
        assert 'helpline_deadline_breaches_total{platform="tiktok"} 2.0' in exposed
        assert running["report"]["casework"] == {
            "deadline_breaches": 4,
            "deadline_breaches_by_platform": [
                {"platform": "tiktok", "name": "TikTok", "breaches": 2},
                {"platform": "x", "name": "X", "breaches": 1},
                {"platform": "youtube", "name": "YouTube", "breaches": 1},
            ],
            "appeals": 4,
            "overturned": 2,
            "closed_advice_only": 4,
            "manual_decisions": 4,
        }
        assert "casework,overturned,2,,," in running["report_csv"].splitlines()
        page = render(running["report"], "html")
        assert "4 escalated URLs passed their decision deadline" in page

        conn = await asyncpg.connect(database_url)
        try:
            out = io.StringIO()
            assert await rebuild_command(conn, settings, Console(file=out, width=120)) == 0
        finally:
            await conn.close()
        assert "differs" not in out.getvalue(), out.getvalue()
        assert await read_totals(database_url) == running
