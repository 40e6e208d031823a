"""Metrics counts an event only from the producer the topic registry names: forged outcomes
(wrong or missing `ce_source`, an unknown platform) change no total and land in metrics'
dead-letter topic with the reason; genuine ones count. Real broker, database and service."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_escalator import outcomes
from helpline_escalator.platform_settings import PLATFORM_SLUGS
from helpline_intake import usecase as intake_usecase
from helpline_metrics import provenance
from helpline_metrics.app import create_app
from helpline_shared import cloudevents
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationOutcomeV1,
    TriagedUrl,
    derive_id,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage, create_topics, publish_all
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, DEAD_LETTERS, ESCALATION_OUTCOMES
from helpline_triage import usecase as triage_usecase
from tests.conftest import fresh_database
from tests.helpers import every_scope_key, keyed_client, read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served

TRIAGE_PLATFORMS = Path(triage_usecase.__file__).with_name("platforms.json")


def test_the_producer_map_and_platforms_are_those_the_services_use() -> None:
    assert provenance.SOURCES == {
        "intake": intake_usecase.SOURCE,
        "triage": triage_usecase.SOURCE,
        "escalator": outcomes.SOURCE,
    }
    assert provenance.expected_sources(ESCALATION_OUTCOMES.name) == {outcomes.SOURCE}
    triage_slugs = set(json.loads(TRIAGE_PLATFORMS.read_text())["platforms"])
    assert triage_slugs == set(PLATFORM_SLUGS)
    assert triage_slugs | {"unknown"} == provenance.PLATFORMS


def outcome(platform: str, decision: str = "removed") -> EscalationOutcomeV1:
    case_id, url_id = uuid.uuid4(), uuid.uuid4()
    return EscalationOutcomeV1(
        event_id=derive_id("escalation.outcome", url_id, "decided"),
        case_id=case_id,
        escalation_id=derive_id("escalation", "platform", platform, str(url_id)),
        platform=platform,
        url=f"https://example.org/{url_id}",
        state="decided",
        decision=decision,  # type: ignore[arg-type]
        attempts=1,
        received_at=utcnow(),
        occurred_at=utcnow(),
        url_id=url_id,
    )


def triaged(platform: str, source: str) -> OutgoingMessage:
    case_id = uuid.uuid4()
    event = CaseTriagedV1(
        event_id=derive_id("case.triaged", case_id),
        case_id=case_id,
        received_at=utcnow(),
        triaged_at=utcnow(),
        harm_types=["impersonation"],
        urgency="normal",
        route="platform",
        rules_fired=[],
        urls=[
            TriagedUrl(
                url_id=uuid.uuid4(),
                url=f"https://example.org/{case_id}",
                normalized_url=f"https://example.org/{case_id}",
                platform=platform,
                route="platform",
            )
        ],
    )
    return cloudevents.event_message(
        CASES_TRIAGED.name,
        event,
        event_id=event.event_id,
        key=case_id,
        type_="helpline.case.triaged.v1",
        source=source,
        time=event.triaged_at,
    )


def message(event: EscalationOutcomeV1, source: str | None) -> OutgoingMessage:
    m = cloudevents.event_message(
        ESCALATION_OUTCOMES.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_="helpline.escalation.decided.v1",
        source=source or "",
        time=event.occurred_at,
    )
    if source is None:
        del m.headers["ce_source"]
    return m


async def totals_when(url: str, key: str, done: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    async with keyed_client(url, key) as client:
        while True:
            t = (await client.get("/v1/totals")).json()
            if done(t):
                return dict(t)
            assert time.monotonic() < deadline, f"totals never got there: {t}"
            await asyncio.sleep(0.2)


async def test_forged_outcomes_are_dead_lettered_and_never_counted(
    infra: Infra, tmp_dir: Path
) -> None:
    with dedicated_broker(infra, tmp_dir) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_provenance"),
        )
        await create_topics(settings)
        genuine = [outcome("tiktok"), outcome("youtube", "no_violation")]
        forged = {
            "wrong source": message(outcome("tiktok"), "urn:attacker"),
            "no source": message(outcome("x"), None),
            "unknown platform": message(outcome("forged-platform"), outcomes.SOURCE),
            # The escalator's source on a topic only triage produces.
            "triaged by another": triaged("tiktok", outcomes.SOURCE),
        }
        key = await every_scope_key(settings.database_url or "")
        async with served(create_app(settings)) as url:
            # The forged events first: were they counted, the totals below would show them.
            await publish_all_of(settings, list(forged.values()))
            await publish_all_of(
                settings,
                [
                    *(message(e, outcomes.SOURCE) for e in genuine),
                    triaged("youtube", triage_usecase.SOURCE),
                ],
            )
            t = await totals_when(
                url, key, lambda t: t["escalations"]["total"] >= 2 and t["cases"] >= 1
            )
            letters = await read_topic(servers, DEAD_LETTERS["metrics"].name, expected=len(forged))
            await asyncio.sleep(1)  # anything counted late would show now
            t = await totals_when(url, key, lambda _: True)

    assert t["escalations"]["total"] == 2
    assert t["takedowns"] == 1
    assert t["decisions"] == {"no_violation": 1, "removed": 1}
    assert set(t["escalations"]["by_platform"]) == {"tiktok", "youtube"}
    assert t["cases"] == 1
    assert set(t["cases_by_platform"]) == {"youtube"}

    errors = {}
    for letter in letters:
        headers = {k: v.decode() for k, v in letter.headers}
        event_id = json.loads(letter.value)["event_id"]
        errors[event_id] = headers["dlq_error"]
        assert headers["dlq_error"].startswith(f"forged {headers['dlq_source_topic']}: ")
    by_kind = {kind: errors[json.loads(m.value)["event_id"]] for kind, m in forged.items()}
    assert by_kind["wrong source"].startswith(
        "forged helpline.escalations.outcomes: ce_source 'urn:attacker' is not its "
        "registered producer (urn:helpline:escalator)"
    )
    assert "no ce_source header (expected urn:helpline:escalator)" in by_kind["no source"]
    assert by_kind["unknown platform"].endswith("unknown platform 'forged-platform'")
    assert by_kind["triaged by another"] == (
        "forged helpline.cases.triaged: ce_source 'urn:helpline:escalator' is not its "
        "registered producer (urn:helpline:triage)"
    )


async def publish_all_of(settings: Settings, messages: list[OutgoingMessage]) -> None:
    broker = KafkaBroker(settings.kafka_bootstrap_servers)
    await broker.connect()
    try:
        await publish_all(broker, messages)
    finally:
        await broker.stop()


@pytest.mark.parametrize("platform", sorted(provenance.PLATFORMS))
def test_every_known_platform_from_the_escalator_is_counted(platform: str) -> None:
    event = outcome(platform)
    record = _record(message(event, outcomes.SOURCE))
    assert provenance.refusal(record, [platform]) is None


def _record(m: OutgoingMessage) -> Any:
    headers = [(k, v.encode()) for k, v in m.headers.items()]
    return ConsumerRecord(m.topic, 0, 0, 0, 0, m.key, m.value, None, 0, 0, headers)
