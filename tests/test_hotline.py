"""The hotline route on the escalator as deployed (served app, dedicated Tansu broker, real
PostgreSQL, the simulator playing the national hotline): child sexual imagery on any
platform in the registry goes to the hotline and never to the platform's notice channel.
The case hears `needs_manual` (it stays on the practitioners' queue, saying the hotline
has it) and then `submitted` with the hotline's reference; the report is one attempt on
the activity topic. A hotline that refuses leaves it to a practitioner, saying so."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpline_escalator.adapters.registry import ADAPTERS
from helpline_shared.events import CaseTriagedV1, derive_id, utcnow
from helpline_shared.topics import CASES_TRIAGED
from tests.infra import Infra
from tests.test_escalator_commands import (
    Stack,
    activity,
    escalator_stack,
    eventually,
    outcomes,
    row,
)

HOTLINE_REASON = "child sexual imagery: reported to the national hotline; a practitioner follows up"


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    async with escalator_stack(infra, tmp_dir, escalation_max_attempts=2) as s:
        yield s


async def sim_stats(stack: Stack) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.simulator}/_sim/stats") as r:
        return dict(await r.json())


def csam_case(url: str, platform: str) -> CaseTriagedV1:
    case_id = uuid.uuid4()
    now = utcnow()
    return CaseTriagedV1.model_validate(
        {
            "event_id": derive_id("triaged", case_id),
            "case_id": case_id,
            "received_at": now,
            "triaged_at": now,
            "harm_types": ["child_sexual_imagery"],
            "urgency": "critical",
            "route": "hotline",
            "rules_fired": ["csam"],
            "urls": [
                {
                    "url_id": derive_id("url", case_id, url),
                    "url": url,
                    "normalized_url": url,
                    "platform": platform,
                    "route": "hotline",
                }
            ],
        }
    )


async def test_every_platform_s_child_sexual_imagery_goes_to_the_hotline_never_the_platform(
    stack: Stack,
) -> None:
    platforms = sorted(ADAPTERS)
    assert len(platforms) == 13
    cases = {
        slug: csam_case(f"https://content.example/{slug}/{uuid.uuid4().hex}", slug)
        for slug in platforms
    }
    for case in cases.values():
        await stack.publish(CASES_TRIAGED.name, case.case_id, case)

    async def all_submitted() -> list[Any] | None:
        rows = await stack.db.pool.fetch(
            "SELECT * FROM escalator.escalations WHERE route = 'hotline' AND state = 'submitted'"
        )
        return list(rows) if len(rows) == len(platforms) else None

    escalations = await eventually(all_submitted, "every hotline escalation submitted")
    stats = await sim_stats(stack)
    assert stats["submissions"] == 0  # not one notice to a platform
    assert all(p["notices"] == 0 for p in stats["platform_activity"].values())
    hotline = stats["hotline"]
    assert hotline["reports"] == len(platforms)
    assert hotline["per_client_reference"] == {str(e["escalation_id"]): 1 for e in escalations}
    assert hotline["by_platform"] == {slug: 1 for slug in platforms}
    attempts = await stack.db.pool.fetch("SELECT kind, result FROM escalator.attempts")
    assert {(a["kind"], a["result"]) for a in attempts} == {("hotline_report", "ok")}
    assert len(attempts) == len(platforms)

    for slug, case in cases.items():
        told = await outcomes(stack, case)
        assert [o.state for o in told] == ["needs_manual", "submitted"], slug
        manual, submitted = told
        assert manual.reason == HOTLINE_REASON
        assert {manual.route, submitted.route} == {"hotline"}
        assert submitted.platform == slug
        assert submitted.platform_reference is not None
        assert submitted.platform_reference.startswith("hotline-")
    one = escalations[0]
    acts = await activity(stack, one["escalation_id"])
    assert [(a.kind, a.result, a.http_status) for a in acts] == [("hotline_report", "ok", 201)]


async def test_a_hotline_that_refuses_leaves_the_report_to_a_practitioner(stack: Stack) -> None:
    async with aiohttp.ClientSession() as http:
        # Every answer a 503 (the hotline's behaviour is the simulator's global one).
        r = await http.post(f"{stack.simulator}/_sim/config", json={"error_rate": 1.0})
        assert r.status == 200
    try:
        case = csam_case(f"https://content.example/x/{uuid.uuid4().hex}", "x")
        await stack.publish(CASES_TRIAGED.name, case.case_id, case)

        async def given_up() -> list[Any] | None:
            told = await outcomes(stack, case)
            return told if len(told) == 2 else None

        first, second = await eventually(given_up, "the practitioner told to report by hand")
        assert (first.state, first.reason) == ("needs_manual", HOTLINE_REASON)
        assert second.state == "needs_manual"
        assert second.event_id != first.event_id
        assert second.reason is not None
        assert "the national hotline did not take the report" in second.reason
        assert "report it to the hotline by hand" in second.reason
        escalation = await row(stack, second.escalation_id)
        assert (escalation["state"], escalation["platform_reference"]) == ("needs_manual", None)
        acts = await activity(stack, second.escalation_id)
        assert [(a.kind, a.result, a.http_status) for a in acts] == [
            ("hotline_report", "retryable", 503),
            ("hotline_report", "retryable", 503),
        ]
        assert (await sim_stats(stack))["submissions"] == 0
    finally:
        async with aiohttp.ClientSession() as http:
            await http.post(f"{stack.simulator}/_sim/config", json={"platforms": {"hotline": None}})
