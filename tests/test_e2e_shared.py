"""End to end on the real broker, database and simulator: the same content reported by
two cases is sent to its platform once, both cases show the decision, and a third case
arriving after the decision is told at once without a new notice; metrics counts one URL
escalated and three URL reports."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpline_cli.stack import Stack
from helpline_shared.events import EscalationOutcomeV1
from helpline_shared.topics import ESCALATION_OUTCOMES
from tests.helpers import every_scope_key, keyed_client, read_topic
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import _stack, wait_until

pytestmark = pytest.mark.e2e

VIDEO = f"https://www.tiktok.com/@shared/video/7{random.Random().randrange(10**17):018d}"
# Three forms of one video that compare equal once normalised (tracking parameter,
# fragment, plain).
FORMS = [VIDEO + "?utm_source=copy_link", VIDEO + "#comments", VIDEO]


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir / "shared"):
            yield s


async def report(stack: Stack, n: int, url: str) -> uuid.UUID:
    body = {
        "schema_version": 1,
        "source": "shared-e2e",
        "report_id": f"shared-{n}",
        "reporter": {"name": f"Reporter {n}", "email": f"r{n}@school.example"},
        "organisation": f"School {n}",
        "description": "Pupils are bullying a teacher in this video and the comments are abusive.",
        "urls": [url],
    }
    key = await every_scope_key(stack.settings.database_url or "", source="shared-e2e")
    async with keyed_client(stack.url("intake"), key) as client:
        r = await client.post("/v1/reports", json=body)
    assert r.status_code == 202, r.text
    return uuid.UUID(r.json()["case_id"])


async def outcomes_of(stack: Stack, cases: set[uuid.UUID]) -> list[EscalationOutcomeV1]:
    records = await read_topic(stack.settings.kafka_bootstrap_servers, ESCALATION_OUTCOMES.name)
    events = [EscalationOutcomeV1.model_validate_json(r.value) for r in records]
    return [e for e in events if e.case_id in cases]


async def sim_stats(stack: Stack) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return dict((await client.get(f"{stack.url('simulator')}/_sim/stats")).json())


async def totals(stack: Stack) -> dict[str, Any]:
    key = await every_scope_key(stack.settings.database_url or "")
    async with keyed_client(key=key) as client:
        return dict((await client.get(f"{stack.url('metrics')}/v1/totals")).json())


def states(events: list[EscalationOutcomeV1], case_id: uuid.UUID) -> list[str]:
    return [e.state for e in events if e.case_id == case_id]


async def test_the_same_content_from_three_cases_gets_one_notice(stack: Stack) -> None:
    a = await report(stack, 1, FORMS[0])
    b = await report(stack, 2, FORMS[1])

    async def both_decided() -> tuple[bool, Any]:
        events = await outcomes_of(stack, {a, b})
        seen = {c: states(events, c) for c in (a, b)}
        return all("decided" in s for s in seen.values()), seen

    await wait_until(both_decided, 90, "both cases told the decision")
    first = await outcomes_of(stack, {a, b})
    assert (await sim_stats(stack))["submissions"] == 1  # one notice for the content
    assert len({e.escalation_id for e in first}) == 1
    for case_id in (a, b):
        told = [e for e in first if e.case_id == case_id]
        assert [e.state for e in told] == ["submitted", "decided"]  # each case, in order
        assert len({e.event_id for e in told}) == 2
    decided = {e.case_id: e for e in first if e.state == "decided"}
    assert decided[a].decision == decided[b].decision
    assert decided[a].platform_reference == decided[b].platform_reference
    assert {decided[a].url, decided[b].url} == {FORMS[0], FORMS[1]}  # as each case wrote it

    c = await report(stack, 3, FORMS[2])

    async def late_case_told() -> tuple[bool, Any]:
        s = states(await outcomes_of(stack, {c}), c)
        return "decided" in s, s

    await wait_until(late_case_told, 60, "the late case told the known decision")
    [late] = [e for e in await outcomes_of(stack, {c}) if e.state == "decided"]
    assert late.escalation_id == decided[a].escalation_id
    assert late.decision == decided[a].decision
    assert late.occurred_at == decided[a].occurred_at  # the same decision, not a new one
    assert late.linked_cases == 3
    assert (await sim_stats(stack))["submissions"] == 1  # and no new notice

    async def counted() -> tuple[bool, Any]:
        t = await totals(stack)
        reports = t["url_reports"]
        return reports["by_state"].get("decided") == 3, t

    await wait_until(counted, 60, "metrics counting the three reports")
    t = await totals(stack)
    assert t["urls_escalated"] == 1
    assert t["escalations"]["total"] == 1
    assert t["escalations"]["by_state"] == {"decided": 1}
    assert t["url_reports"]["total"] == t["urls"] == 3
    assert t["cases"] == 3
    assert sum(t["decisions"].values()) == 1
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{stack.url('metrics')}/metrics")).text
    assert "helpline_urls_escalated_total 1.0" in text
    assert 'helpline_url_reports{state="decided"} 3.0' in text


_RNG = random.Random()
_YT = "".join(
    _RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(11)
)
_TWEET = f"1{_RNG.randrange(10**18):018d}"
_IG = "C" + "".join(
    _RNG.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij0123456789") for _ in range(10)
)
# The same content written on different hosts: a short link, the mobile host, the old name.
CROSS_HOST = {
    "youtube": [f"https://youtu.be/{_YT}?si=share", f"https://m.youtube.com/watch?v={_YT}"],
    "x": [
        f"https://twitter.com/Someone/status/{_TWEET}?s=20",
        f"https://x.com/someone/status/{_TWEET}",
    ],
    "instagram": [f"https://instagr.am/p/{_IG}/", f"https://www.instagram.com/reel/{_IG}/?igsh=x"],
}


async def test_the_same_content_on_different_hosts_gets_one_notice_per_platform(
    stack: Stack,
) -> None:
    before = (await sim_stats(stack))["by_platform"]
    cases: dict[uuid.UUID, str] = {}
    for n, (platform, forms) in enumerate(CROSS_HOST.items()):
        for m, form in enumerate(forms):
            cases[await report(stack, 10 + 2 * n + m, form)] = platform

    async def all_decided() -> tuple[bool, Any]:
        events = await outcomes_of(stack, set(cases))
        seen = {c: states(events, c) for c in cases}
        return all("decided" in s for s in seen.values()), seen

    await wait_until(all_decided, 120, "every case told the decision")
    events = [e for e in await outcomes_of(stack, set(cases)) if e.state == "decided"]
    after = (await sim_stats(stack))["by_platform"]
    for platform in CROSS_HOST:
        told = [e for e in events if cases[e.case_id] == platform]
        assert len(told) == 2, platform
        assert len({e.escalation_id for e in told}) == 1, platform  # one shared escalation
        assert after.get(platform, 0) - before.get(platform, 0) == 1, platform  # one notice
