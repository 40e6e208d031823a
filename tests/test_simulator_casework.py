"""After the notice, every simulated platform plays what casework needs, driven through the
escalator's own adapters: follow-ups citing a notice's reference (counted per notice, never
a notice), appeals of a "no violation" decision overturned at a seeded rate, withdrawal of a
pending notice where the platform offers it; and the national hotline takes reports,
idempotent by the sender's reference. Checked by the simulator's counts."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from helpline_escalator.adapters.base import (
    ConfigurationError,
    NeedsManualError,
    Notice,
    PermanentError,
    PlatformResult,
)
from helpline_escalator.adapters.notice_api import NoticeApiAdapter
from helpline_escalator.adapters.registry import MANUAL_CHANNELS, NOTICE_APIS
from helpline_escalator.platform_settings import PlatformConfig, resolve
from helpline_shared.events import TAKEDOWN_DECISIONS
from helpline_shared.settings import Settings
from helpline_simulator.platforms import PLATFORMS
from helpline_simulator.server import SimConfig
from tests.helpers import serve_simulator

SLUGS = sorted(NOTICE_APIS)
QUIET: dict[str, Any] = {
    "latency_ms": 0,
    "error_rate": 0,
    "rate_limit_rate": 0,
    "decision_delay_ms": 0,
    "takedown_rate": 0.942,
    "appeal_overturn_rate": 0.3,
}
HOTLINE_TOKEN = {"Authorization": "Bearer dev-hotline-credentials"}


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[str]:
    async with serve_simulator() as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def configure(http: aiohttp.ClientSession, sim: str, changes: dict[str, Any]) -> None:
    async with http.post(f"{sim}/_sim/config", json=changes) as r:
        assert r.status == 200, await r.text()


async def stats(http: aiohttp.ClientSession, sim: str) -> dict[str, Any]:
    async with http.get(f"{sim}/_sim/stats") as r:
        body: dict[str, Any] = await r.json()
        return body


@pytest.fixture
async def sim(simulator: str, http: aiohttp.ClientSession) -> AsyncIterator[str]:
    """The simulator, quiet, with no platform's own behaviour and nothing received."""
    cleared = {"platforms": dict.fromkeys(PLATFORMS)}
    await configure(http, simulator, {**QUIET, **cleared})
    async with http.post(f"{simulator}/_sim/reset"):
        pass
    try:
        yield simulator
    finally:
        await configure(http, simulator, {**QUIET, **cleared})


def notice(client_reference: uuid.UUID | None = None) -> Notice:
    return Notice(
        client_reference=client_reference or uuid.uuid4(),
        url="https://example.org/content/1",
        harm_types=("bullying_harassment",),
        urgency="high",
        explanation="A pupil is being harassed in comments.",
        notifier_name="Helpline Practitioner",
        notifier_email="practitioner@helpline.example",
    )


def adapter(slug: str, http: aiohttp.ClientSession, sim: str) -> NoticeApiAdapter:
    return NOTICE_APIS[slug](http, sim)


async def found_no_violation(a: NoticeApiAdapter, n: int) -> list[PlatformResult]:
    """`n` notices the platform decided at once to leave up as "no violation" (with the
    takedown rate 0, most decisions are; the others, such as age restrictions, are skipped)."""
    found: list[PlatformResult] = []
    for _ in range(20 * n):
        sent = await a.submit(notice())
        if sent.decision == "no_violation":
            found.append(sent)
            if len(found) == n:
                return found
    raise AssertionError("too few no-violation decisions")


@pytest.mark.parametrize("slug", SLUGS)
async def test_follow_ups_are_counted_per_notice_and_never_make_a_notice(
    slug: str, sim: str, http: aiohttp.ClientSession
) -> None:
    await configure(http, sim, {"decision_delay_ms": 3_600_000})
    a = adapter(slug, http, sim)
    first = await a.submit(notice())
    other = await a.submit(notice())

    answers = [await a.follow_up(first.reference, n) for n in (1, 2, 3)]
    await a.follow_up(other.reference, 1)

    assert all(r == PlatformResult(first.reference, None) for r in answers)
    activity = (await stats(http, sim))["platform_activity"][slug]
    assert activity["notices"] == 2
    assert activity["followups"] == 4
    assert activity["followups_per_reference"] == {first.reference: 3, other.reference: 1}
    with pytest.raises(PermanentError, match="knows no such notice") as unknown:
        await a.follow_up(f"{slug}-99999999", 1)
    assert unknown.value.http_status == 404
    assert (await stats(http, sim))["platform_activity"][slug]["notices"] == 2


@pytest.mark.parametrize("slug", SLUGS)
async def test_an_appeal_overturns_at_rate_one_and_is_upheld_at_rate_zero(
    slug: str, sim: str, http: aiohttp.ClientSession
) -> None:
    """A "no violation" decision appealed at overturn rate 1.0 becomes a takedown; at 0.0
    it stays "no violation". The notice's own status follows the appeal."""
    await configure(http, sim, {"takedown_rate": 0.0})
    a = adapter(slug, http, sim)
    kept, overturned = await found_no_violation(a, 2)

    await configure(http, sim, {"appeal_overturn_rate": 0.0})
    upheld = await a.appeal(kept.reference, "The account names the pupil; please look again.")
    await configure(http, sim, {"appeal_overturn_rate": 1.0})
    won = await a.appeal(overturned.reference, "Impersonates our head teacher.")

    assert upheld.decision == "no_violation"
    assert won.decision in TAKEDOWN_DECISIONS
    assert upheld.reference != won.reference
    assert await a.appeal_status(kept.reference, upheld.reference) == upheld
    assert await a.appeal_status(overturned.reference, won.reference) == won
    assert (await a.status(overturned.reference)).decision in TAKEDOWN_DECISIONS
    assert (await a.status(kept.reference)).decision == "no_violation"
    # Appealing again answers the same appeal; nothing more is counted.
    assert await a.appeal(overturned.reference, "again") == won
    activity = (await stats(http, sim))["platform_activity"][slug]
    assert (activity["appeals"], activity["overturns"]) == (2, 1)
    assert activity["notices"] >= 2


async def test_an_appeal_is_pending_until_the_decision_delay_has_passed(
    sim: str, http: aiohttp.ClientSession
) -> None:
    await configure(http, sim, {"takedown_rate": 0.0, "appeal_overturn_rate": 1.0})
    a = adapter("tiktok", http, sim)
    (decided,) = await found_no_violation(a, 1)
    await configure(http, sim, {"decision_delay_ms": 300})

    appeal = await a.appeal(decided.reference, "Please look again.")

    assert appeal.decision is None
    assert (await stats(http, sim))["platform_activity"]["tiktok"]["overturns"] == 0
    for _ in range(100):
        answer = await a.appeal_status(decided.reference, appeal.reference)
        if answer.decision is not None:
            break
        await asyncio.sleep(0.05)
    assert answer == PlatformResult(appeal.reference, "removed")
    assert (await stats(http, sim))["platform_activity"]["tiktok"]["overturns"] == 1


async def test_overturns_are_drawn_from_the_seed_and_the_reference(
    sim: str, http: aiohttp.ClientSession
) -> None:
    """The same seed and client references get the same appeal results after a reset;
    at rate 0.5 some of 40 are overturned and some upheld. (Reddit leaves content up only
    as "no violation", so every decision at takedown rate 0 can be appealed.)"""
    await configure(http, sim, {"takedown_rate": 0.0, "appeal_overturn_rate": 0.5})
    a = adapter("reddit", http, sim)
    references = [uuid.uuid4() for _ in range(40)]

    async def results() -> list[str | None]:
        out = []
        for ref in references:
            sent = await a.submit(notice(ref))
            out.append((await a.appeal(sent.reference, "Please look again.")).decision)
        return out

    first = await results()
    async with http.post(f"{sim}/_sim/reset"):
        pass
    again = await results()

    assert first == again
    assert 0 < sum(d in TAKEDOWN_DECISIONS for d in first) < 40
    assert set(first) - TAKEDOWN_DECISIONS == {"no_violation"}


@pytest.mark.parametrize("slug", SLUGS)
async def test_an_undecided_notice_or_a_takedown_cannot_be_appealed(
    slug: str, sim: str, http: aiohttp.ClientSession
) -> None:
    a = adapter(slug, http, sim)
    await configure(http, sim, {"takedown_rate": 1.0})
    removed = await a.submit(notice())
    await configure(http, sim, {"decision_delay_ms": 3_600_000})
    pending = await a.submit(notice())

    for ref in (removed.reference, pending.reference):
        with pytest.raises(PermanentError, match="state forbids it") as refused:
            await a.appeal(ref, "Please look again.")
        assert refused.value.http_status == 409
    with pytest.raises(PermanentError, match="knows no such notice"):
        await a.appeal(f"{slug}-99999999", "Please look again.")
    assert (await stats(http, sim))["platform_activity"][slug]["appeals"] == 0


@pytest.mark.parametrize("slug", SLUGS)
async def test_a_pending_notice_is_withdrawn_where_the_platform_allows_it(
    slug: str, sim: str, http: aiohttp.ClientSession
) -> None:
    a = adapter(slug, http, sim)
    decided = await a.submit(notice())
    await configure(http, sim, {"decision_delay_ms": 3_600_000})
    pending = await a.submit(notice())

    withdrawn = await a.withdraw(pending.reference)

    activity = (await stats(http, sim))["platform_activity"][slug]
    if not PLATFORMS[slug].withdrawal:
        # The adapter knows the platform offers none: False, and nothing is sent.
        assert withdrawn is False
        assert activity["withdrawals"] == 0
        assert (await a.status(pending.reference)).decision is None
        return
    assert withdrawn is True
    assert activity["withdrawals"] == 1
    assert await a.withdraw(pending.reference) is True  # again: still withdrawn, once
    with pytest.raises(PermanentError, match="state forbids it"):
        await a.withdraw(decided.reference)
    with pytest.raises(PermanentError, match="state forbids it"):
        await a.follow_up(pending.reference, 1)  # a withdrawn notice is not chased
    assert (await stats(http, sim))["platform_activity"][slug]["withdrawals"] == 1


@pytest.mark.parametrize("slug", sorted(s for s, p in PLATFORMS.items() if not p.withdrawal))
async def test_a_platform_without_withdrawal_answers_405(
    slug: str, sim: str, http: aiohttp.ClientSession
) -> None:
    """Asked directly (as an adapter configured with `withdrawal = true` would), the
    platform refuses with 405, which the adapter reads as False."""
    a = adapter(slug, http, sim)
    await configure(http, sim, {"decision_delay_ms": 3_600_000})
    pending = await a.submit(notice())
    async with http.post(
        f"{sim}/{slug}/v1/notices/{pending.reference}/withdrawal", headers=a._headers
    ) as r:
        assert r.status == 405
        assert "offers no withdrawal" in (await r.json())["error"]
    # As a deployment that sets HELPLINE_PLATFORMS__<SLUG>__WITHDRAWAL=true would have it:
    cls = NOTICE_APIS[slug]
    told = resolve(
        slug,
        PlatformConfig(withdrawal=True),
        Settings.model_construct(platform_base_url=sim),
        cls.defaults(),
        dev_anywhere=True,
    )
    assert await cls(http, told).withdraw(pending.reference) is False


async def test_a_follow_up_or_appeal_in_the_wrong_shape_is_refused_by_name(
    sim: str, http: aiohttp.ClientSession
) -> None:
    a = adapter("youtube", http, sim)
    sent = await a.submit(notice())
    base = f"{sim}/youtube/v1/notices/{sent.reference}"
    for path, body, named in [
        ("followups", {"follow_up": 1, "message": "again"}, "unknown field follow_up"),
        ("followups", {"followUpCount": 0, "message": "again"}, "followUpCount"),
        ("followups", {"followUpCount": True, "message": "x"}, "followUpCount"),
        ("appeals", {"reason": "x"}, "unknown field reason"),
        ("appeals", {"appealReason": ""}, "appealReason"),
    ]:
        async with http.post(f"{base}/{path}", json=body, headers=a._headers) as r:
            assert r.status == 400, (path, body)
            assert named in (await r.json())["detail"]
    activity = (await stats(http, sim))["platform_activity"]["youtube"]
    assert (activity["followups"], activity["appeals"]) == (0, 0)


async def test_every_call_after_the_notice_needs_the_platforms_credentials(
    sim: str, http: aiohttp.ClientSession
) -> None:
    a = adapter("x", http, sim)
    sent = await a.submit(notice())
    await configure(http, sim, {"platforms": {"x": {"credentials": "rotated"}}})

    for call in (
        a.follow_up(sent.reference, 1),
        a.appeal(sent.reference, "again"),
        a.appeal_status(sent.reference, "x-appeal-00000001"),
        a.withdraw(sent.reference),
    ):
        with pytest.raises(ConfigurationError):
            await call


async def test_manual_channels_follow_up_and_appeal_by_hand_and_withdraw_nothing() -> None:
    for slug, cls in MANUAL_CHANNELS.items():
        a = cls()
        with pytest.raises(NeedsManualError, match="by hand"):
            await a.follow_up("REF-1", 1)
        with pytest.raises(NeedsManualError, match="by hand"):
            await a.appeal("REF-1", "Please look again.")
        with pytest.raises(NeedsManualError, match=slug):
            await a.appeal_status("REF-1", "APPEAL-1")
        assert await a.withdraw("REF-1") is False


def test_the_adapters_and_the_simulator_agree_on_withdrawal() -> None:
    for slug, cls in NOTICE_APIS.items():
        assert PLATFORMS[slug].withdrawal == cls.withdrawal, slug
        assert cls.appeals, slug
    assert {s for s, p in PLATFORMS.items() if not p.withdrawal} == {"snapchat", "discord"}


def hotline_report(client_reference: str, **changes: Any) -> dict[str, Any]:
    return {
        "client_reference": client_reference,
        "url": "https://www.tiktok.com/@someone/video/7301234567890123456",
        "platform": "tiktok",
        "harm_types": ["child_sexual_imagery"],
        "urgency": "critical",
        **changes,
    }


async def test_the_hotline_takes_a_report_once_per_client_reference(
    sim: str, http: aiohttp.ClientSession
) -> None:
    ref = str(uuid.uuid4())
    url = f"{sim}/hotline/v1/reports"
    async with http.post(url, json=hotline_report(ref), headers=HOTLINE_TOKEN) as r:
        assert r.status == 201
        first = await r.json()
    async with http.post(url, json=hotline_report(ref), headers=HOTLINE_TOKEN) as r:
        assert r.status == 200
        assert (await r.json())["reference"] == first["reference"]
    async with http.get(f"{url}/{first['reference']}", headers=HOTLINE_TOKEN) as r:
        assert r.status == 200
        shown = await r.json()
    assert shown["status"] == "actioned"  # after the decision delay: 0, at once
    assert shown["client_reference"] == ref
    async with http.get(f"{url}/hotline-99999999", headers=HOTLINE_TOKEN) as r:
        assert r.status == 404

    s = await stats(http, sim)
    assert s["hotline"]["reports"] == 1
    assert s["hotline"]["per_client_reference"] == {ref: 2}
    assert s["hotline"]["by_platform"] == {"tiktok": 1}
    assert all(p["notices"] == 0 for p in s["platform_activity"].values())


async def test_the_hotline_reports_actioned_after_the_decision_delay(
    sim: str, http: aiohttp.ClientSession
) -> None:
    await configure(http, sim, {"decision_delay_ms": 3_600_000})
    url = f"{sim}/hotline/v1/reports"
    async with http.post(url, json=hotline_report(str(uuid.uuid4())), headers=HOTLINE_TOKEN) as r:
        assert (r.status, (await r.json())["status"]) == (201, "received")
    await configure(http, sim, {"decision_delay_ms": 0})
    async with http.post(url, json=hotline_report(str(uuid.uuid4())), headers=HOTLINE_TOKEN) as r:
        reference = (await r.json())["reference"]
    async with http.get(f"{url}/{reference}", headers=HOTLINE_TOKEN) as r:
        assert (await r.json())["status"] == "actioned"


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (hotline_report("not-a-uuid"), "client_reference"),
        (hotline_report(str(uuid.uuid4()), url="ftp://x.example/a"), "url"),
        (hotline_report(str(uuid.uuid4()), harm_types=[]), "harm_types"),
        (hotline_report(str(uuid.uuid4()), urgency="soon"), "urgency"),
        (hotline_report(str(uuid.uuid4()), reporter="A. Teacher"), "unknown field reporter"),
        ({"url": "https://x.example/a"}, "missing field"),
        (["not", "an", "object"], "object"),
    ],
)
async def test_the_hotline_refuses_a_report_in_the_wrong_shape_by_name(
    sim: str, http: aiohttp.ClientSession, body: Any, named: str
) -> None:
    async with http.post(f"{sim}/hotline/v1/reports", json=body, headers=HOTLINE_TOKEN) as r:
        assert r.status == 400
        assert named in (await r.json())["detail"]
    assert (await stats(http, sim))["hotline"]["reports"] == 0


async def test_the_hotline_needs_its_token(sim: str, http: aiohttp.ClientSession) -> None:
    body = hotline_report(str(uuid.uuid4()))
    for headers in ({}, {"Authorization": "Bearer dev-tiktok-credentials"}):
        async with http.post(f"{sim}/hotline/v1/reports", json=body, headers=headers) as r:
            assert r.status == 401
    assert (await stats(http, sim))["hotline"]["reports"] == 0


def test_the_hotline_expects_the_escalators_token_or_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith(("HELPLINE_SIMULATOR__", "HELPLINE_HOTLINE")):
            monkeypatch.delenv(name)
    assert SimConfig.from_settings(Settings()).expects("hotline", "credentials") == (
        "dev-hotline-credentials"
    )
    monkeypatch.setenv("HELPLINE_HOTLINE_CREDENTIALS", "hotline-partner-token")
    config = SimConfig.from_settings(Settings())
    assert config.expects("hotline", "credentials") == "hotline-partner-token"
    assert "hotline-partner-token" not in json.dumps(config.shown())
    monkeypatch.setenv("HELPLINE_SIMULATOR__HOTLINE__CREDENTIALS", "simulator-own")
    config = SimConfig.from_settings(Settings())
    assert config.expects("hotline", "credentials") == "simulator-own"
    assert config.platforms == {}  # the hotline is no platform
