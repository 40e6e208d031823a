"""One contract suite for every platform adapter, run against the real simulator over HTTP.

The simulator (`helpline_simulator`) plays each platform; the adapters (`NOTICE_APIS`) speak
to it. Both sides must agree on each platform's status vocabulary, request shape and
credentials, and every failure the simulator can inject must surface as the contract's
typed errors. Manual channels (no notice API) give instructions and never call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import typing
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
import structlog
from faststream.kafka import KafkaBroker
from pydantic import SecretStr

from helpline_cli.infra import free_port
from helpline_escalator.adapters.base import (
    ConfigurationError,
    NeedsManualError,
    Notice,
    PermanentError,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.adapters.notice_api import NoticeApiAdapter
from helpline_escalator.adapters.registry import MANUAL_CHANNELS, NOTICE_APIS, build_adapters
from helpline_escalator.dispatcher import PlatformWorker
from helpline_escalator.platform_settings import PlatformSettings, load_platform_settings
from helpline_shared.db import Database
from helpline_shared.events import TAKEDOWN_DECISIONS, Decision
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings
from helpline_simulator.platforms import PLATFORMS, shape_error
from helpline_simulator.server import SimConfig, _decide
from helpline_triage.rules import RuleSet
from tests.conftest import opened_database
from tests.helpers import serve_simulator
from tests.infra import Infra

ADAPTERS = NOTICE_APIS
DECISIONS: frozenset[str] = frozenset(typing.get_args(Decision))
SLUGS = sorted(ADAPTERS)
QUIET = {
    "latency_ms": 0,
    "error_rate": 0,
    "rate_limit_rate": 0,
    "decision_delay_ms": 0,
    "lost_reply_rate": 0,
    "store_delay_ms": 0,
}


@pytest.fixture(scope="module")
async def simulator() -> AsyncIterator[str]:
    async with serve_simulator() as url:
        yield url


async def configure(base_url: str, **changes: float) -> None:
    async with (
        aiohttp.ClientSession() as control,
        control.post(f"{base_url}/_sim/config", json=changes) as r,
    ):
        assert r.status == 200, await r.text()
        applied = await r.json()
    for key, value in changes.items():
        assert applied[key] == value


@pytest.fixture
async def sim(simulator: str) -> AsyncIterator[str]:
    """The simulator's base URL, with quiet behaviour before and after the test."""
    await configure(simulator, **QUIET)
    try:
        yield simulator
    finally:
        await configure(simulator, **QUIET)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


@pytest.fixture(params=SLUGS)
def slug(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def adapter(slug: str, sim: str, session: aiohttp.ClientSession) -> NoticeApiAdapter:
    return ADAPTERS[slug](session, sim)


def notice(harm_type: str = "impersonation", urgency: str = "high") -> Notice:
    return Notice(
        client_reference=uuid.uuid4(),
        url="https://example.org/content/1",
        harm_types=(harm_type,),
        urgency=urgency,
        explanation="An account is impersonating our head teacher.",
        notifier_name="Helpline Practitioner",
        notifier_email="practitioner@helpline.example",
    )


# --- The registry --------------------------------------------------------------------


def test_every_simulated_platform_has_an_adapter_and_vice_versa() -> None:
    assert set(ADAPTERS) == set(PLATFORMS)
    for slug, cls in ADAPTERS.items():
        assert cls.slug == slug
        assert cls.path == f"/{slug}/v1/notices"


# --- The vocabulary contract between simulator and adapters -----------------------------


def test_every_status_the_simulator_returns_maps_to_a_known_value(slug: str) -> None:
    spec = PLATFORMS[slug]
    decisions = ADAPTERS[slug].decisions

    assert decisions[spec.pending] is None
    for status in (*spec.takedowns, *spec.other):
        assert status in decisions, f"{slug}: simulator status {status!r} unknown to adapter"
        assert decisions[status] in DECISIONS, f"{slug}: {status!r} -> {decisions[status]!r}"


def test_takedown_statuses_map_to_takedown_decisions(slug: str) -> None:
    spec = PLATFORMS[slug]
    decisions = ADAPTERS[slug].decisions

    assert {decisions[s] for s in spec.takedowns} <= TAKEDOWN_DECISIONS
    assert not {decisions[s] for s in spec.other} & TAKEDOWN_DECISIONS
    assert decisions[spec.other[0]] == "no_violation"


def test_adapter_decision_values_are_all_contract_decisions(slug: str) -> None:
    values = set(ADAPTERS[slug].decisions.values())

    assert None in values
    assert values - {None} <= DECISIONS


# --- Submitting, status and lookup against the simulator ---------------------------------


async def test_submit_with_no_decision_delay_returns_a_decision(adapter: NoticeApiAdapter) -> None:
    result = await adapter.submit(notice())

    assert isinstance(result, PlatformResult)
    assert result.reference.startswith(f"{adapter.slug}-")
    assert result.decision in DECISIONS


@pytest.mark.parametrize(
    ("harm_type", "urgency"),
    [("child_sexual_imagery", "critical"), ("online_reputation", "normal")],
)
async def test_submit_accepts_every_category_and_priority(
    adapter: NoticeApiAdapter, harm_type: str, urgency: str
) -> None:
    result = await adapter.submit(notice(harm_type, urgency))

    assert result.decision in DECISIONS


async def test_decision_arrives_later_with_a_decision_delay(
    adapter: NoticeApiAdapter, sim: str
) -> None:
    await configure(sim, decision_delay_ms=250)

    submitted = await adapter.submit(notice())

    assert submitted.reference
    assert submitted.decision is None
    pending = await adapter.status(submitted.reference)
    assert pending == PlatformResult(submitted.reference, None)

    deadline = time.monotonic() + 3
    decided = pending
    while decided.decision is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        decided = await adapter.status(submitted.reference)

    assert decided.reference == submitted.reference
    assert decided.decision in DECISIONS


async def test_status_repeats_the_decision(adapter: NoticeApiAdapter) -> None:
    submitted = await adapter.submit(notice())

    assert await adapter.status(submitted.reference) == submitted


async def test_lookup_finds_a_submitted_notice(adapter: NoticeApiAdapter) -> None:
    sent = notice()
    submitted = await adapter.submit(sent)

    found = await adapter.lookup(sent.client_reference)

    assert found == submitted


async def test_lookup_finds_a_pending_notice(adapter: NoticeApiAdapter, sim: str) -> None:
    await configure(sim, decision_delay_ms=60_000)
    sent = notice()
    submitted = await adapter.submit(sent)

    found = await adapter.lookup(sent.client_reference)

    assert found == PlatformResult(submitted.reference, None)


async def test_lookup_of_an_unknown_reference_is_none(adapter: NoticeApiAdapter) -> None:
    assert await adapter.lookup(uuid.uuid4()) is None


async def test_lookup_does_not_find_another_platforms_notice(
    adapter: NoticeApiAdapter, sim: str, session: aiohttp.ClientSession
) -> None:
    other_slug = next(s for s in SLUGS if s != adapter.slug)
    sent = notice()
    await ADAPTERS[other_slug](session, sim).submit(sent)

    assert await adapter.lookup(sent.client_reference) is None


def client_reference_deciding(slug: str, status: str) -> uuid.UUID:
    """A client reference the (seeded) simulator answers with `status` on `slug`."""
    config = SimConfig()
    for i in range(100_000):
        candidate = uuid.uuid5(uuid.NAMESPACE_URL, f"contract/{slug}/{i}")
        if _decide(PLATFORMS[slug], config, str(candidate)) == status:
            return candidate
    raise AssertionError(f"no client reference makes the simulator answer {status!r}")


async def test_every_decision_status_travels_through_the_adapter(
    adapter: NoticeApiAdapter,
) -> None:
    spec = PLATFORMS[adapter.slug]
    for status in (*spec.takedowns, *spec.other):
        sent = replace(notice(), client_reference=client_reference_deciding(adapter.slug, status))

        submitted = await adapter.submit(sent)

        assert submitted.decision == adapter.decisions[status], status
        assert submitted.decision in DECISIONS
        assert await adapter.status(submitted.reference) == submitted
        assert await adapter.lookup(sent.client_reference) == submitted


# --- Failures become the contract's typed errors ---------------------------------------


async def test_rate_limited_submit_is_retryable_with_retry_after(
    adapter: NoticeApiAdapter, sim: str
) -> None:
    await configure(sim, rate_limit_rate=1.0)

    with pytest.raises(RetryableError) as caught:
        await adapter.submit(notice())

    assert caught.value.http_status == 429
    assert caught.value.retry_after_s == 1.0


async def test_server_error_on_submit_is_retryable(adapter: NoticeApiAdapter, sim: str) -> None:
    await configure(sim, error_rate=1.0)

    with pytest.raises(RetryableError) as caught:
        await adapter.submit(notice())

    assert caught.value.http_status == 503
    assert caught.value.retry_after_s is None


async def test_server_errors_on_status_and_lookup_are_retryable(
    adapter: NoticeApiAdapter, sim: str
) -> None:
    sent = notice()
    submitted = await adapter.submit(sent)
    await configure(sim, error_rate=1.0)

    with pytest.raises(RetryableError) as on_status:
        await adapter.status(submitted.reference)
    with pytest.raises(RetryableError) as on_lookup:
        await adapter.lookup(sent.client_reference)

    assert on_status.value.http_status == 503
    assert on_lookup.value.http_status == 503


async def test_closed_port_is_retryable(slug: str, session: aiohttp.ClientSession) -> None:
    closed = free_port()  # bound then released: nothing listens on it
    adapter = ADAPTERS[slug](session, f"http://127.0.0.1:{closed}")

    with pytest.raises(RetryableError) as caught:
        await adapter.submit(notice())

    assert caught.value.http_status is None
    assert slug in caught.value.reason


async def test_lookup_on_a_missing_route_is_an_error_not_not_found(
    slug: str, sim: str, session: aiohttp.ClientSession
) -> None:
    """Hole 6: a 404 from a route that does not exist read as "never received", which
    re-sends the notice. Only the platform's own not-found answer means that."""
    misrouted = ADAPTERS[slug](session, f"{sim}/wrong-prefix")
    with pytest.raises(RetryableError) as caught:
        await misrouted.lookup(uuid.uuid4())
    assert caught.value.http_status == 404
    assert caught.value.maybe_received


async def test_a_lost_reply_is_a_maybe_received_error_and_the_notice_is_stored(
    adapter: NoticeApiAdapter, sim: str
) -> None:
    """The simulator's "stored, but the reply was lost" fault, as the adapter sees it."""
    await configure(sim, lost_reply_rate=1.0)
    n = notice()
    with pytest.raises(RetryableError) as caught:
        await adapter.submit(n)
    assert caught.value.maybe_received
    await configure(sim, lost_reply_rate=0.0)
    assert await adapter.lookup(n.client_reference) is not None


async def test_a_late_store_is_found_only_later(adapter: NoticeApiAdapter, sim: str) -> None:
    """The simulator's "stored late" fault: received at once, found by lookup later."""
    await configure(sim, store_delay_ms=300.0)
    n = notice()
    await adapter.submit(n)
    assert await adapter.lookup(n.client_reference) is None
    await asyncio.sleep(0.4)
    assert await adapter.lookup(n.client_reference) is not None


# --- Each platform's own request shape and credentials ------------------------------------

RULES = RuleSet.load()


def rules_notice(slug: str, harm_type: str = "bullying_harassment") -> Notice:
    """A notice as the dispatcher builds it: the rules' DSA category and reason code."""
    return replace(
        notice(harm_type),
        category=RULES.dsa_category(harm_type),  # type: ignore[arg-type]
        reason_code=RULES.reason_code(harm_type, slug),  # type: ignore[arg-type]
    )


def leaves(value: object) -> list[object]:
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in leaves(v)]
    return [value]


def test_the_notice_carries_what_article_16_asks_for(slug: str) -> None:
    """The exact URL, an explanation, the notifier's name and email, the good-faith
    statement, the DSA category and the platform's own reason code from the rules data."""
    sent = rules_notice(slug)
    payload = ADAPTERS[slug](None, "http://127.0.0.1:1").payload(sent)  # type: ignore[arg-type]

    values = leaves(payload)
    for wanted in (
        sent.url,
        sent.explanation,
        sent.notifier_name,
        sent.notifier_email,
        sent.good_faith_statement,
        sent.dsa_category,
        RULES.reason_code("bullying_harassment", slug),  # type: ignore[arg-type]
        str(sent.client_reference),
    ):
        assert wanted in values, f"{slug}: {wanted!r} missing from {payload}"


def test_the_notice_matches_the_platforms_shape_and_nothing_less(slug: str) -> None:
    payload = ADAPTERS[slug](None, "http://127.0.0.1:1").payload(rules_notice(slug))  # type: ignore[arg-type]
    spec = PLATFORMS[slug]

    assert shape_error(spec, payload) is None
    for key in payload:  # every field is one the platform requires
        assert shape_error(spec, {k: v for k, v in payload.items() if k != key}) is not None


def test_the_platforms_shapes_differ() -> None:
    shapes = {json.dumps(PLATFORMS[s].shape, sort_keys=True) for s in SLUGS}
    assert len(shapes) >= 8  # Meta's three platforms share one
    for slug in SLUGS:
        payload = ADAPTERS[slug](None, "http://127.0.0.1:1").payload(rules_notice(slug))  # type: ignore[arg-type]
        refused_by = [s for s in SLUGS if shape_error(PLATFORMS[s], payload) is not None]
        assert len(refused_by) >= len(SLUGS) - 3, slug


async def test_the_simulator_accepts_each_notice_with_the_rules_reason_code(
    adapter: NoticeApiAdapter, sim: str, session: aiohttp.ClientSession
) -> None:
    """Over HTTP, for every harm type: the platform received its own reason code."""
    for harm_type in RULES.data["harm_types"]:
        sent = rules_notice(adapter.slug, harm_type)
        submitted = await adapter.submit(sent)
        async with session.get(f"{sim}/_sim/stats") as r:
            stats = await r.json()
        assert adapter.slug not in stats["malformed_by_platform"]
        found = await adapter.lookup(sent.client_reference)
        assert found == submitted
    assert adapter.categories == {  # the fallback, when triage gave no code, is the rules'
        h: RULES.reason_code(h, adapter.slug)  # type: ignore[arg-type]
        for h in RULES.data["harm_types"]
    }


class Malformed(NoticeApiAdapter):
    """An adapter that leaves out one field of its platform's shape."""

    drop: str = ""

    def payload(self, notice: Notice) -> dict[str, typing.Any]:
        body = super().payload(notice)
        body.pop(self.drop)
        return body


async def test_a_malformed_notice_gets_400_and_a_permanent_error(
    slug: str, sim: str, session: aiohttp.ClientSession
) -> None:
    cls = ADAPTERS[slug]
    field = next(iter(cls(session, sim).payload(rules_notice(slug))))
    broken = type(f"Broken{cls.__name__}", (Malformed, cls), {"drop": field})(session, sim)
    before = await sim_stats(session, sim)

    with pytest.raises(PermanentError) as caught:
        await broken.submit(rules_notice(slug))

    assert caught.value.http_status == 400
    assert field in caught.value.reason
    after = await sim_stats(session, sim)
    assert after["malformed_by_platform"].get(slug, 0) == (
        before["malformed_by_platform"].get(slug, 0) + 1
    )
    assert after["submissions"] == before["submissions"]


async def sim_stats(session: aiohttp.ClientSession, sim: str) -> dict[str, typing.Any]:
    async with session.get(f"{sim}/_sim/stats") as r:
        stats: dict[str, typing.Any] = await r.json()
    return stats


def with_credentials(slug: str, sim: str, secret: str) -> PlatformSettings:
    dev = ADAPTERS[slug](None, sim).settings  # type: ignore[arg-type]
    return dataclasses.replace(
        dev,
        credentials=SecretStr(secret) if dev.credentials else None,
        client_secret=SecretStr(secret) if dev.client_secret else None,
        dev_credentials=False,
    )


WRONG = "wrong-secret-7731"


async def test_wrong_credentials_are_a_configuration_error(
    slug: str, sim: str, session: aiohttp.ClientSession
) -> None:
    wrong = ADAPTERS[slug](session, with_credentials(slug, sim, WRONG))
    before = await sim_stats(session, sim)

    for call in (
        wrong.submit(notice()),
        wrong.status(f"{slug}-00000001"),
        wrong.lookup(uuid.uuid4()),
    ):
        with pytest.raises(ConfigurationError) as caught:
            await call
        assert caught.value.http_status == 401
        assert caught.value.reason.startswith(f"{slug}: credentials refused")
        assert WRONG not in str(caught.value)
        assert not isinstance(caught.value, RetryableError)

    after = await sim_stats(session, sim)
    assert after["answers_by_platform"][slug]["401"] == (
        before["answers_by_platform"].get(slug, {}).get("401", 0) + 3
    )
    assert after["submissions"] == before["submissions"]
    assert WRONG not in repr(wrong)
    assert WRONG not in repr(wrong.settings)


async def test_credentials_the_platform_expects_are_accepted(
    slug: str, sim: str, session: aiohttp.ClientSession
) -> None:
    """The simulator configured with a platform's own (non-dev) credentials accepts an
    adapter that has them, and refuses the development ones."""
    expected = {"credentials": "prod-like-1", "client_id": "dev-" + slug + "-client"}
    expected["client_secret"] = "prod-like-1"
    async with session.post(f"{sim}/_sim/config", json={"platforms": {slug: expected}}) as r:
        assert r.status == 200
        assert "prod-like-1" not in await r.text()
    try:
        configured = ADAPTERS[slug](session, with_credentials(slug, sim, "prod-like-1"))
        assert (await configured.submit(notice())).reference
        with pytest.raises(ConfigurationError):
            await ADAPTERS[slug](session, sim).submit(notice())
    finally:
        async with session.post(f"{sim}/_sim/config", json={"platforms": {slug: None}}) as r:
            assert r.status == 200


async def test_a_platform_without_status_lookup_is_never_asked(
    slug: str, sim: str, session: aiohttp.ClientSession
) -> None:
    settings = dataclasses.replace(ADAPTERS[slug](None, sim).settings, status_lookup=False)  # type: ignore[arg-type]
    adapter = ADAPTERS[slug](session, settings)
    submitted = await adapter.submit(notice())
    before = await sim_stats(session, sim)

    with pytest.raises(NeedsManualError) as on_status:
        await adapter.status(submitted.reference)
    with pytest.raises(NeedsManualError):
        await adapter.lookup(uuid.uuid4())

    assert on_status.value.reference == submitted.reference
    assert (await sim_stats(session, sim))["answers_by_platform"] == before["answers_by_platform"]


# --- Manual channels ----------------------------------------------------------------------


@pytest.mark.parametrize("manual", sorted(MANUAL_CHANNELS))
async def test_a_manual_channel_gives_instructions_and_never_calls(manual: str) -> None:
    adapter = MANUAL_CHANNELS[manual]()  # no HTTP client at all: nothing could be sent
    sent = rules_notice(manual, "threats_risk_to_life")

    with pytest.raises(NeedsManualError) as caught:
        await adapter.submit(sent)

    reason = caught.value.reason
    assert reason.startswith(f"{manual}: no notice API")
    assert adapter.where in reason
    assert RULES.reason_code("threats_risk_to_life", manual) in reason  # type: ignore[arg-type]
    assert sent.dsa_category in reason
    assert "good-faith statement" in reason
    assert sent.url not in reason  # the URL is on the escalation, not in logged text
    with pytest.raises(NeedsManualError):
        await adapter.status("ref-1")
    with pytest.raises(NeedsManualError):
        await adapter.lookup(uuid.uuid4())
    assert manual not in PLATFORMS  # the simulator plays no such API


def test_build_adapters_gives_each_platform_its_own_settings() -> None:
    platforms = load_platform_settings(Settings(platform_base_url="http://127.0.0.1:9"))
    made: list[str] = []

    def client(slug: str) -> aiohttp.ClientSession:
        made.append(slug)
        return typing.cast(aiohttp.ClientSession, None)

    adapters = build_adapters(client, platforms)

    assert set(adapters) == set(platforms)
    assert sorted(made) == sorted(NOTICE_APIS)  # manual channels get no client
    for slug, adapter in adapters.items():
        assert adapter.settings is platforms[slug]


# --- Through a platform worker, on the real database --------------------------------------


@pytest.fixture(scope="module")
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_adapters") as database:
        yield database


async def add_escalation(db: Database, platform: str) -> uuid.UUID:
    eid, case_id = uuid.uuid4(), uuid.uuid4()
    url = f"https://example.org/{platform}/{eid}"
    await db.pool.execute(
        """INSERT INTO escalator.escalations (escalation_id, case_id, url, normalized_url,
               platform, route, harm_types, urgency, received_at, state, attempts,
               dsa_category, reason_code)
           VALUES ($1, $2, $3, $3, $4, 'platform', $5, 'high', now(), 'queued', 0, $6, $7)""",
        eid,
        case_id,
        url,
        platform,
        ["threats_risk_to_life"],
        RULES.dsa_category("threats_risk_to_life"),
        RULES.reason_code("threats_risk_to_life", platform),  # type: ignore[arg-type]
    )
    await db.pool.execute(
        """INSERT INTO escalator.escalation_cases
               (escalation_id, case_id, url_id, url, harm_types, urgency, received_at)
           VALUES ($1, $2, $1, $3, $4, 'high', now())""",
        eid,
        case_id,
        url,
        ["threats_risk_to_life"],
    )
    return eid


async def test_refused_credentials_never_reach_the_logs_or_the_database(
    db: Database,
    sim: str,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    eid = await add_escalation(db, "tiktok")
    adapter = ADAPTERS["tiktok"](session, with_credentials("tiktok", sim, WRONG))
    worker = PlatformWorker(adapter, db, Outbox(db, KafkaBroker(), "e"), Settings())

    with caplog.at_level(logging.DEBUG), structlog.testing.capture_logs() as logged:
        await worker.step()

    # The error is logged, through structlog's capture or, when an earlier test configured
    # logging as in production (its loggers then cached), through the standard library.
    errors = [e for e in logged if e["log_level"] == "error" and e.get("platform") == "tiktok"]
    errors += [
        r.msg
        for r in caplog.records
        if r.levelno == logging.ERROR
        and isinstance(r.msg, dict)
        and r.msg.get("platform") == "tiktok"
    ]
    assert errors
    assert WRONG not in caplog.text
    assert WRONG not in repr(logged)
    stored = await db.pool.fetch(
        """SELECT e.reason, a.error FROM escalator.escalations e
           LEFT JOIN escalator.attempts a USING (escalation_id) WHERE escalation_id = $1""",
        eid,
    )
    assert stored
    assert all(WRONG not in str(dict(row)) for row in stored)
    assert (await sim_stats(session, sim))["answers_by_platform"]["tiktok"]["401"] >= 1


@pytest.mark.parametrize("manual", sorted(MANUAL_CHANNELS))
async def test_a_manual_channels_escalation_waits_for_a_person_with_instructions(
    db: Database, sim: str, session: aiohttp.ClientSession, manual: str
) -> None:
    eid = await add_escalation(db, manual)
    before = await sim_stats(session, sim)
    worker = PlatformWorker(
        MANUAL_CHANNELS[manual](), db, Outbox(db, KafkaBroker(), "e"), Settings()
    )

    assert await worker.step() == 1

    row = await db.pool.fetchrow(
        "SELECT state, reason FROM escalator.escalations WHERE escalation_id = $1", eid
    )
    assert row["state"] == "needs_manual"
    assert MANUAL_CHANNELS[manual].where in row["reason"]
    assert RULES.reason_code("threats_risk_to_life", manual) in row["reason"]  # type: ignore[arg-type]
    after = await sim_stats(session, sim)
    assert after["submissions"] == before["submissions"]
    assert after["answers_by_platform"] == before["answers_by_platform"]
