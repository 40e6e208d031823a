"""`helpline metrics rebuild` against a real broker and PostgreSQL: after the metrics service
counted a set of events (redelivered, shared content, a forged one, a refusal), the rebuild
from the topics gives the same totals, filtered figures and report, and the service then
goes on counting on the swapped-in tables."""

from __future__ import annotations

import asyncio
import io
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from helpline_cli.metrics_cli import rebuild_command
from helpline_escalator import outcomes
from helpline_intake import usecase as intake_usecase
from helpline_metrics.app import create_app
from helpline_shared import cloudevents
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    RejectionReason,
    ReportRejectedV1,
    TriagedUrl,
    derive_id,
)
from helpline_shared.kafka import OutgoingMessage, create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, ESCALATION_OUTCOMES
from helpline_triage import usecase as triage_usecase
from tests.conftest import fresh_database
from tests.helpers import every_scope_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_metrics_provenance import publish_all_of, totals_when

QUERIES = ["", "?period=2024", "?period=2024-02&platform=tiktok", "?harm_type=impersonation"]


def triaged(c: CaseTriagedV1) -> OutgoingMessage:
    return cloudevents.event_message(
        CASES_TRIAGED.name,
        c,
        event_id=c.event_id,
        key=c.case_id,
        type_="helpline.case.triaged.v1",
        source=triage_usecase.SOURCE,
        time=c.triaged_at,
    )


def told(e: EscalationOutcomeV1, source: str = outcomes.SOURCE) -> OutgoingMessage:
    return cloudevents.event_message(
        ESCALATION_OUTCOMES.name,
        e,
        event_id=e.event_id,
        key=e.case_id,
        type_=f"helpline.escalation.{e.state}.v1",
        source=source,
        time=e.occurred_at,
    )


def year_of_events(seed: int, cases: int) -> tuple[list[OutgoingMessage], int]:
    """Messages for `cases` cases in early 2024 (some sharing content), and a refusal."""
    rng = random.Random(seed)
    messages: list[OutgoingMessage] = []
    first = datetime(2024, 1, 3, tzinfo=UTC)
    shared: dict[str, tuple[uuid.UUID, datetime, list[tuple[str, str | None, float]]]] = {
        "tiktok": (uuid.uuid4(), first, [("submitted", None, 0.1), ("decided", "removed", 30)]),
        "x": (uuid.uuid4(), first, [("submitted", None, 0.1), ("decided", "no_violation", 9)]),
    }
    for n in range(cases):
        received = datetime(2024, 1, 3, tzinfo=UTC) + timedelta(days=n * 1.7)
        case_id = uuid.uuid4()
        platforms = rng.choice([["tiktok"], ["tiktok", "x"], ["youtube"], ["unknown"]])
        urls = [
            TriagedUrl(
                url_id=uuid.uuid4(),
                url=f"https://{p}.example/{case_id}",
                normalized_url=f"https://{p}.example/{case_id}",
                platform=p,
                route="manual" if p == "unknown" else "platform",
            )
            for p in platforms
        ]
        c = CaseTriagedV1(
            event_id=derive_id("case.triaged", case_id),
            case_id=case_id,
            received_at=received,
            triaged_at=received,
            harm_types=rng.sample(["impersonation", "bullying_harassment", "hate"], 2),
            urgency=rng.choice(["high", "normal"]),
            route="platform",
            rules_fired=[],
            urls=urls,
            decision_due_at=received + timedelta(hours=48),
        )
        messages.append(triaged(c))
        for u in urls:
            opened = received
            steps: list[tuple[str, str | None, float]] = (
                [("needs_manual", None, 0.1)]
                if u.platform == "unknown"
                else [("submitted", None, 0.1)]
                + [
                    (
                        "decided",
                        rng.choice(["removed", "removed", "no_violation"]),
                        rng.randint(1, 90),
                    )
                ]
                * (rng.random() < 0.8)
            )
            escalation = derive_id("escalation", u.url_id)
            if n % 5 == 0 and u.platform in shared:
                # Content several cases reported: one escalation, the same facts for each.
                escalation, opened, steps = shared[u.platform]
            for state, decision, hours in steps:
                messages.append(
                    told(
                        EscalationOutcomeV1(
                            event_id=derive_id("escalation.outcome", u.url_id, state),
                            case_id=case_id,
                            escalation_id=escalation,
                            url_id=u.url_id,
                            platform=u.platform,
                            url=u.url,
                            state=state,  # type: ignore[arg-type]
                            decision=decision,  # type: ignore[arg-type]
                            attempts=1,
                            received_at=received,
                            first_received_at=opened,
                            occurred_at=opened + timedelta(hours=hours),
                        )
                    )
                )
    rejected = ReportRejectedV1(
        event_id=uuid.uuid4(),
        rejected_at=datetime(2024, 2, 1, tzinfo=UTC),
        via="kafka",
        reasons=[RejectionReason(loc="", message="bad", type="json_invalid")],
        original_base64="",
    )
    messages.append(intake_usecase.rejected_message(rejected, b"k"))
    outcome_messages = [m for m in messages if m.topic == ESCALATION_OUTCOMES.name]
    return messages, len(outcome_messages)


async def counted(database_url: str, events: int, timeout_s: float = 60) -> None:
    """Waits until metrics' inbox holds `events` event ids: everything was counted."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        while await conn.fetchval("SELECT count(*) FROM metrics.inbox") < events:
            assert time.monotonic() < deadline, "metrics never counted every event"
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def every_view(url: str, key: str) -> dict[str, Any]:
    async with keyed_client(url, key) as client:
        views = {q: (await client.get(f"/v1/totals{q}")).json() for q in QUERIES}
        views["report"] = (await client.get("/v1/report?year=2024&format=json")).json()
    for view in views.values():
        view.pop("as_of", None)
        for platform in view.get("open_escalations", {}).values():  # ages move with the clock
            platform.pop("oldest_age_hours")
            platform.pop("median_age_hours")
    return views


async def test_rebuild_equals_the_running_totals(infra: Infra, tmp_dir: Path) -> None:
    with dedicated_broker(infra, tmp_dir) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_rebuild"),
        )
        await create_topics(settings)
        messages, outcome_count = year_of_events(7, 40)
        forged = told(
            EscalationOutcomeV1.model_validate_json(
                next(m for m in messages if m.topic == ESCALATION_OUTCOMES.name).value
            ).model_copy(update={"event_id": uuid.uuid4(), "state": "decided"}),
            source="urn:attacker",
        )
        key = await every_scope_key(settings.database_url or "")
        async with served(create_app(settings)) as url:
            await publish_all_of(settings, messages)
            await publish_all_of(settings, [*messages[::3], forged])  # redelivered, forged
            await counted(settings.database_url or "", len(messages))
            running = await every_view(url, key)
            async with keyed_client(url, key) as client:
                page = await client.get("/v1/report?year=2024&format=html")
                assert page.headers["content-type"].startswith("text/html")
                assert "<h1>Annual report 2024</h1>" in page.text
                csv_text = (await client.get("/v1/report?year=2024&format=csv")).text
                assert "headline,cases,40,,," in csv_text.splitlines()
                bad = await client.get("/v1/totals?period=2024-13")
                assert bad.status_code == 400
                assert (await client.get("/v1/report?year=24")).status_code == 400
        assert running[""]["cases"] == 40
        assert running["report"]["cases"] == 40
        assert running["?period=2024-02&platform=tiktok"]["cases"] > 0

        conn = await asyncpg.connect(settings.database_url)
        try:
            # A figure no event gives: gone once the rebuilt tables are swapped in.
            await conn.execute("INSERT INTO metrics.counters VALUES ('stale', '', 5)")
            out = io.StringIO()
            assert await rebuild_command(conn, settings, Console(file=out, width=120)) == 0
            assert (
                await conn.fetchval("SELECT count(*) FROM metrics.counters WHERE name = 'stale'")
                == 0
            )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'metrics_%'"
                )
                == 0
            )
        finally:
            await conn.close()
        summary = out.getvalue()
        assert "metrics rebuilt" in summary
        assert "differs" not in summary, summary
        assert "1 refused" in summary  # the forged outcome, refused as the service refuses it

        async with served(create_app(settings)) as url:
            assert await every_view(url, key) == running
            extra, _ = year_of_events(8, 1)
            await publish_all_of(settings, extra[:1])  # one more case: counted on the new tables
            t = await totals_when(url, key, lambda t: t["cases"] == 41, timeout_s=30)
            assert t["reports_rejected"] == 1
    assert outcome_count > 40
