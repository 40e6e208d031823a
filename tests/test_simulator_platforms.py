"""The simulator plays each platform with its own behaviour: one platform slow, 429-heavy,
failing, deciding later or removing more, while the others stay normal; set at start-up
from the environment or at run time through `/_sim/config`. Measured by counts (answers
per platform and status, timeouts, decisions), never by a clock."""

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
    Notice,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.adapters.registry import NOTICE_APIS
from helpline_shared.events import TAKEDOWN_DECISIONS
from helpline_shared.settings import Settings
from helpline_simulator.platforms import PLATFORMS, REASON_CODES
from helpline_simulator.server import SimConfig
from helpline_triage.rules import RuleSet
from tests.helpers import serve_simulator

QUIET: dict[str, Any] = {
    "latency_ms": 0,
    "error_rate": 0,
    "rate_limit_rate": 0,
    "decision_delay_ms": 0,
    "takedown_rate": 0.942,
    "retry_after_s": 1.0,
}


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[str]:
    async with serve_simulator() as url:
        yield url


async def control(base_url: str, changes: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/_sim/config", json=changes) as r,
    ):
        body: dict[str, Any] = await r.json()
        return r.status, body


async def stats(base_url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/_sim/stats") as r:
        body: dict[str, Any] = await r.json()
        return body


@pytest.fixture
async def sim(simulator: str) -> AsyncIterator[str]:
    """The simulator, quiet and with no platform's own behaviour, before and after."""
    cleared = {"platforms": dict.fromkeys(PLATFORMS)}
    assert (await control(simulator, {**QUIET, **cleared}))[0] == 200
    async with aiohttp.ClientSession() as http:
        await http.post(f"{simulator}/_sim/reset")
    try:
        yield simulator
    finally:
        await control(simulator, {**QUIET, **cleared})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as s:
        yield s


def notice() -> Notice:
    return Notice(
        client_reference=uuid.uuid4(),
        url="https://example.org/content/1",
        harm_types=("bullying_harassment",),
        urgency="high",
        explanation="A pupil is being harassed in comments.",
        notifier_name="Helpline Practitioner",
        notifier_email="practitioner@helpline.example",
    )


async def submit_all(
    session: aiohttp.ClientSession, sim: str, slug: str, n: int
) -> list[PlatformResult | BaseException]:
    adapter = NOTICE_APIS[slug](session, sim)
    return await asyncio.gather(
        *(adapter.submit(notice()) for _ in range(n)), return_exceptions=True
    )


def answers(s: dict[str, Any], slug: str, status: int) -> int:
    return int(s["answers_by_platform"].get(slug, {}).get(str(status), 0))


async def test_one_slow_platform_times_out_while_the_others_answer(
    sim: str, session: aiohttp.ClientSession
) -> None:
    """TikTok answers in about 2 s (at least 1 s): every call with a 0.5 s timeout fails;
    YouTube's, made at the same time, all succeed."""
    status, applied = await control(sim, {"platforms": {"tiktok": {"latency_ms": 2000}}})
    assert status == 200
    assert applied["platforms"]["tiktok"]["latency_ms"] == 2000

    slow, normal = await asyncio.gather(
        submit_all(session, sim, "tiktok", 5), submit_all(session, sim, "youtube", 20)
    )

    assert all(isinstance(r, RetryableError) and "timeout" in r.reason for r in slow)
    assert all(isinstance(r, PlatformResult) for r in normal)


async def test_one_platform_429_heavy_with_its_own_retry_after(
    sim: str, session: aiohttp.ClientSession
) -> None:
    await control(sim, {"platforms": {"x": {"rate_limit_rate": 1.0, "retry_after_s": 7}}})

    limited = await submit_all(session, sim, "x", 20)
    others = await submit_all(session, sim, "reddit", 20)

    assert all(
        isinstance(r, RetryableError) and r.http_status == 429 and r.retry_after_s == 7.0
        for r in limited
    )
    assert all(isinstance(r, PlatformResult) for r in others)
    s = await stats(sim)
    assert answers(s, "x", 429) == 20
    assert answers(s, "reddit", 429) == 0
    assert answers(s, "reddit", 201) == 20


async def test_a_share_of_429s_and_503s_on_one_platform(
    sim: str, session: aiohttp.ClientSession
) -> None:
    await control(sim, {"platforms": {"discord": {"rate_limit_rate": 0.25, "error_rate": 0.25}}})

    results = await submit_all(session, sim, "discord", 200)
    await submit_all(session, sim, "twitch", 50)

    s = await stats(sim)
    limited, failed = answers(s, "discord", 429), answers(s, "discord", 503)
    assert 25 <= limited <= 75  # 50 expected of 200
    assert 25 <= failed <= 75
    assert limited + failed + answers(s, "discord", 201) == 200
    assert sum(isinstance(r, RetryableError) for r in results) == limited + failed
    assert answers(s, "twitch", 201) == 50
    assert answers(s, "twitch", 429) + answers(s, "twitch", 503) == 0


async def test_decisions_arrive_later_on_one_platform(
    sim: str, session: aiohttp.ClientSession
) -> None:
    await control(sim, {"platforms": {"snapchat": {"decision_delay_ms": 3_600_000}}})

    later = await submit_all(session, sim, "snapchat", 10)
    now = await submit_all(session, sim, "instagram", 10)

    assert all(isinstance(r, PlatformResult) and r.decision is None for r in later)
    assert all(isinstance(r, PlatformResult) and r.decision is not None for r in now)
    adapter = NOTICE_APIS["snapchat"](session, sim)
    for r in later:
        assert isinstance(r, PlatformResult)
        assert (await adapter.status(r.reference)).decision is None


async def test_removal_probability_per_platform(sim: str, session: aiohttp.ClientSession) -> None:
    await control(
        sim,
        {"platforms": {"facebook": {"takedown_rate": 0.0}, "threads": {"takedown_rate": 1.0}}},
    )

    kept = await submit_all(session, sim, "facebook", 30)
    removed = await submit_all(session, sim, "threads", 30)

    assert all(isinstance(r, PlatformResult) for r in kept + removed)
    assert not any(r.decision in TAKEDOWN_DECISIONS for r in kept)  # type: ignore[union-attr]
    assert all(r.decision in TAKEDOWN_DECISIONS for r in removed)  # type: ignore[union-attr]


async def test_credentials_changed_at_run_time_refuse_the_old_ones(
    sim: str, session: aiohttp.ClientSession
) -> None:
    status, applied = await control(sim, {"platforms": {"tiktok": {"credentials": "rotated"}}})
    assert status == 200
    assert applied["platforms"]["tiktok"]["credentials"] == "***"

    refused = await submit_all(session, sim, "tiktok", 3)
    accepted = await submit_all(session, sim, "youtube", 3)

    assert all(isinstance(r, ConfigurationError) and r.http_status == 401 for r in refused)
    assert all(isinstance(r, PlatformResult) for r in accepted)
    s = await stats(sim)
    assert answers(s, "tiktok", 401) == 3
    assert s["by_platform"].get("tiktok", 0) == 0
    assert "rotated" not in json.dumps(s)


async def test_a_platforms_own_behaviour_is_cleared_with_null(
    sim: str, session: aiohttp.ClientSession
) -> None:
    await control(sim, {"platforms": {"x": {"rate_limit_rate": 1.0}}})
    await control(sim, {"platforms": {"x": {"retry_after_s": 3}}})  # merges
    _, applied = await control(sim, {})
    assert applied["platforms"]["x"] == {"rate_limit_rate": 1.0, "retry_after_s": 3.0}

    await control(sim, {"platforms": {"x": None}})

    assert all(isinstance(r, PlatformResult) for r in await submit_all(session, sim, "x", 5))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"platforms": {"myspace": {"latency_ms": 1}}}, "myspace"),
        ({"platforms": {"whatsapp": {"latency_ms": 1}}}, "whatsapp"),  # no API to play
        ({"platforms": {"tiktok": {"latency": 1}}}, "latency"),
        ({"platforms": {"tiktok": {"error_rate": 2}}}, "error_rate"),
        ({"platforms": {"tiktok": {"latency_ms": -1}}}, "latency_ms"),
        ({"no_such_knob": 1}, "no_such_knob"),
        # The whole simulator's behaviour is checked as one platform's is.
        ({"error_rate": 2}, "error_rate"),
        ({"rate_limit_rate": "often"}, "rate_limit_rate"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"retry_after_s": "nan"}, "retry_after_s"),
        ({"lost_reply_rate": 1.5}, "lost_reply_rate"),
        ({"takedown_rate": -0.1}, "takedown_rate"),
        ({"platforms": ["tiktok"]}, "platforms"),
    ],
)
async def test_an_invalid_change_is_refused_and_named(
    sim: str, changes: dict[str, Any], named: str
) -> None:
    before = (await stats(sim))["config"]

    status, body = await control(sim, changes)

    assert status == 400
    assert named in body["error"]
    assert (await stats(sim))["config"] == before


def test_per_platform_behaviour_and_credentials_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(os.environ):
        if name.startswith(("HELPLINE_SIMULATOR__", "HELPLINE_PLATFORMS")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HELPLINE_SIMULATOR__TIKTOK__LATENCY_MS", "2000")
    monkeypatch.setenv("HELPLINE_SIMULATOR__TIKTOK__RATE_LIMIT_RATE", "0.5")
    monkeypatch.setenv("HELPLINE_SIMULATOR__TIKTOK__RETRY_AFTER_S", "4")
    # The escalator's credentials, shared by `helpline dev`: the simulator expects them.
    monkeypatch.setenv("HELPLINE_PLATFORMS__YOUTUBE__API_KEY", "yt-key")
    monkeypatch.setenv("HELPLINE_PLATFORMS__REDDIT__CLIENT_ID", "r-id")
    # ... unless the simulator is told otherwise.
    monkeypatch.setenv("HELPLINE_PLATFORMS__X__CREDENTIALS", "escalator-x")
    monkeypatch.setenv("HELPLINE_SIMULATOR__X__CREDENTIALS", "simulator-x")

    config = SimConfig.from_settings(Settings(simulator_latency_ms=5))

    tiktok, youtube = config.of("tiktok"), config.of("youtube")
    assert (tiktok.latency_ms, tiktok.rate_limit_rate, tiktok.retry_after_s) == (2000, 0.5, 4)
    assert (youtube.latency_ms, youtube.rate_limit_rate) == (5, 0.0)
    assert config.expects("youtube", "credentials") == "yt-key"
    assert config.expects("reddit", "client_id") == "r-id"
    assert config.expects("reddit", "client_secret") == "dev-reddit-secret"
    assert config.expects("x", "credentials") == "simulator-x"
    assert config.expects("instagram", "credentials") == "dev-instagram-credentials"


def test_an_invalid_value_in_the_environment_names_platform_and_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HELPLINE_SIMULATOR__DISCORD__ERROR_RATE", "3")
    with pytest.raises(ValueError, match=r"platform discord, field error_rate"):
        SimConfig.from_settings(Settings())


def test_each_platform_accepts_exactly_the_rules_reason_codes() -> None:
    rules = RuleSet.load()
    for slug in PLATFORMS:
        codes = {rules.reason_code(h, slug) for h in rules.data["harm_types"]}  # type: ignore[arg-type]
        assert REASON_CODES[slug] == codes, slug


def test_every_notice_api_is_simulated_with_the_same_credential_style() -> None:
    assert set(PLATFORMS) == set(NOTICE_APIS)
    for slug, cls in NOTICE_APIS.items():
        assert PLATFORMS[slug].auth == cls.auth, slug
        assert PLATFORMS[slug].lookup_param == cls.lookup_param, slug
