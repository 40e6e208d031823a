"""Circuit breakers and isolation on the real database and the real simulator: an outage
opens one platform's circuit (its escalations wait with the reason, no call goes out) and
a half-open probe closes it, and failed probes fail no escalation however long the outage;
one platform down while another keeps flowing; a 429 storm's Retry-After holds the
platform's calls without opening its circuit; credentials refused (401) are a configuration
error: the circuit opens at once, the error is logged once, no escalation fails."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Any

import aiohttp
import httpx
import pytest
import structlog
from faststream.kafka import KafkaBroker
from prometheus_client import CollectorRegistry

from helpline_escalator.adapters.instagram import InstagramAdapter
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.breaker import CREDENTIALS_REFUSED, BreakerPolicy
from helpline_escalator.circuits import open_circuits, register_circuits
from helpline_escalator.dispatcher import Dispatcher, PlatformWorker
from helpline_shared.db import Database
from helpline_shared.logging import configure_logging
from helpline_shared.outbox import Outbox
from helpline_shared.service import health_routes
from helpline_shared.settings import Settings
from tests.escalator_support import (
    add_escalation,
    clear_escalator,
    module_database,
    module_simulator,
    outbox_states,
    quiet_simulator,
    sim_stats,
)

simulator = module_simulator()
db = module_database("helpline_isolation")


@pytest.fixture
async def http(simulator: str, db: Database) -> AsyncIterator[aiohttp.ClientSession]:
    await clear_escalator(db)
    async with quiet_simulator(simulator, platforms={"tiktok": None, "instagram": None}) as s:
        yield s


async def behave(http: aiohttp.ClientSession, simulator: str, slug: str, **own: Any) -> None:
    """Set one platform's behaviour in the simulator (the others keep theirs)."""
    async with http.post(f"{simulator}/_sim/config", json={"platforms": {slug: own}}) as r:
        assert r.status == 200, await r.text()


async def answers(http: aiohttp.ClientSession, simulator: str, slug: str) -> dict[str, int]:
    """How the simulator answered `slug`'s calls, by HTTP status: every call it got."""
    return dict((await sim_stats(http, simulator))["answers_by_platform"].get(slug, {}))


def make_worker(
    adapter: Any,
    db: Database,
    *,
    failures: int = 3,
    open_s: float = 1.0,
    max_open_s: float = 600.0,
    max_attempts: int = 3,
) -> PlatformWorker:
    # One call at a time, so the breaker's decision is visible call by call.
    settings = Settings(
        escalation_retry_base_s=0.05,
        escalation_max_attempts=max_attempts,
        escalation_claim_lease_s=60,
        platform_timeout_s=2,
        platform_concurrency=1,
        escalation_loops_per_platform=1,
    )
    outbox = Outbox(db, KafkaBroker(), "escalator")
    policy = BreakerPolicy(failures, open_s, max_open_s)
    return PlatformWorker(adapter, db, outbox, settings, policy)


async def rows(db: Database, platform: str) -> list[Any]:
    return list(
        await db.pool.fetch(
            "SELECT * FROM escalator.escalations WHERE platform = $1 ORDER BY created_at",
            platform,
        )
    )


async def readiness(dispatcher: Dispatcher) -> Any:
    """`/health/ready` as the escalator's app builds it: a passing check, and the circuits."""

    async def fine() -> bool:
        return True

    routes = dict(
        health_routes({"database": fine}, {"open_circuits": partial(open_circuits, dispatcher)})
    )
    transport = httpx.ASGITransport(app=routes["/health/ready"])
    async with httpx.AsyncClient(transport=transport, base_url="http://escalator") as client:
        r = await client.get("/health/ready")
    assert r.status_code == 200
    return r.json()


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def test_an_outage_opens_the_circuit_and_a_probe_closes_it(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    worker = make_worker(TikTokAdapter(http, simulator), db)
    dispatcher = Dispatcher({"tiktok": worker})
    registry = CollectorRegistry()
    register_circuits(registry, dispatcher)
    assert gauge(registry, "helpline_platform_circuit_open", platform="tiktok") == 0
    await behave(http, simulator, "tiktok", error_rate=1.0)
    for _ in range(6):
        await add_escalation(db)

    assert await worker.step() == 6
    # Three 503s open the circuit; the other three claims never call.
    assert await answers(http, simulator, "tiktok") == {"503": 3}
    assert gauge(registry, "helpline_platform_circuit_open", platform="tiktok") == 1
    assert gauge(registry, "helpline_platform_circuit_state", platform="tiktok", state="open") == 1
    ready = await readiness(dispatcher)
    assert ready["status"] == "ready"  # one platform down never takes the escalator out
    assert ready["details"]["open_circuits"]["tiktok"]["state"] == "open"
    assert ready["details"]["open_circuits"]["tiktok"]["reason"].startswith("circuit open")
    waiting = await rows(db, "tiktok")
    assert sorted((r["state"], r["attempts"]) for r in waiting) == [
        ("queued", 0),
        ("queued", 0),
        ("queued", 0),
        ("retrying", 1),
        ("retrying", 1),
        ("retrying", 1),
    ]
    probe_at = min(r["next_action_at"] for r in waiting)
    for r in waiting:
        assert r["reason"].startswith("circuit open for tiktok since ")
        assert r["reason"].endswith(": 3 consecutive failures (last: 503)")
    attempts = await db.pool.fetch("SELECT result FROM escalator.attempts ORDER BY result")
    assert [a["result"] for a in attempts] == ["not_sent"] * 3 + ["retryable"] * 3

    # While open: even escalations forced due are not called.
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    assert await worker.step() == 0
    assert await answers(http, simulator, "tiktok") == {"503": 3}

    # Recovery: after the open period one probe goes out; its success closes the circuit.
    await behave(http, simulator, "tiktok", error_rate=0.0)
    await asyncio.sleep(worker.breaker.resume_in_s())
    assert await worker.step() == 1
    assert worker.breaker.state == "closed"
    assert gauge(registry, "helpline_platform_circuit_open", platform="tiktok") == 0
    assert open_circuits(dispatcher) == {}
    assert await worker.step() == 5
    assert {r["state"] for r in await rows(db, "tiktok")} == {"decided"}
    assert await answers(http, simulator, "tiktok") == {"503": 3, "201": 6}
    assert probe_at is not None


async def test_a_long_outage_fails_no_waiting_escalation(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """Failed half-open probes are the outage's, not the escalations': six escalations
    allowed three attempts each outlive eighteen 503s and are decided once it ends."""
    worker = make_worker(TikTokAdapter(http, simulator), db, open_s=0.05, max_open_s=0.1)
    await behave(http, simulator, "tiktok", error_rate=1.0)
    for _ in range(6):
        await add_escalation(db)

    probes = 0
    while (await answers(http, simulator, "tiktok")).get("503", 0) < 18:
        await asyncio.sleep(worker.breaker.resume_in_s())
        await worker.step()
        probes += 1
        assert probes < 100, await answers(http, simulator, "tiktok")
    assert await answers(http, simulator, "tiktok") == {"503": 18}
    waiting = await rows(db, "tiktok")
    # Only the three calls made while the circuit was closed counted.
    assert sorted(r["attempts"] for r in waiting) == [0, 0, 0, 1, 1, 1]
    assert {r["state"] for r in waiting} <= {"queued", "retrying"}
    assert all(r["reason"].startswith("circuit open for tiktok") for r in waiting)
    assert await outbox_states(db) == []  # nothing failed
    probed = await db.pool.fetchval(
        "SELECT count(*) FROM escalator.attempts WHERE result = 'retryable'"
    )
    assert probed == 18  # every call is on record, counted or not

    await behave(http, simulator, "tiktok", error_rate=0.0)
    for _ in range(10):
        await asyncio.sleep(worker.breaker.resume_in_s())
        await worker.step()
        if {r["state"] for r in await rows(db, "tiktok")} == {"decided"}:
            break
    assert {r["state"] for r in await rows(db, "tiktok")} == {"decided"}
    assert await answers(http, simulator, "tiktok") == {"503": 18, "201": 6}


async def test_a_probe_whose_reply_is_lost_is_looked_up_and_not_counted(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """A probe's submit that may have arrived is looked up, never re-sent, and is not one
    of the escalation's attempts."""
    worker = make_worker(TikTokAdapter(http, simulator), db, failures=1, open_s=0.05)
    await behave(http, simulator, "tiktok", error_rate=1.0)
    eid = await add_escalation(db)
    assert await worker.step() == 1
    assert worker.breaker.state == "open"
    await behave(http, simulator, "tiktok", error_rate=0.0)
    async with http.post(f"{simulator}/_sim/config", json={"lost_reply_rate": 1.0}) as r:
        assert r.status == 200
    await asyncio.sleep(worker.breaker.resume_in_s())
    assert await worker.step() == 1  # the probe: received, but its reply is lost
    row = await db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
    )
    assert (row["state"], row["attempts"]) == ("in_flight", 1)
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    for _ in range(10):
        await asyncio.sleep(worker.breaker.resume_in_s())
        await worker.step()
        row = await db.pool.fetchrow(
            "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
        )
        if row["state"] == "decided":
            break
    assert (row["state"], row["attempts"]) == ("decided", 1)
    stats = await sim_stats(http, simulator)
    assert stats["submissions"] == 1  # looked up, never sent twice
    assert stats["repeated_client_references"] == {}


async def test_one_platform_down_while_another_keeps_flowing(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    down = make_worker(TikTokAdapter(http, simulator), db, open_s=60)
    up = make_worker(InstagramAdapter(http, simulator), db, open_s=60)
    await behave(http, simulator, "tiktok", error_rate=1.0)
    for _ in range(20):
        await add_escalation(db)
        await add_escalation(db, platform="instagram")

    for _ in range(10):
        await asyncio.gather(down.step(), up.step())
        if {r["state"] for r in await rows(db, "instagram")} == {"decided"}:
            break
    assert {r["state"] for r in await rows(db, "instagram")} == {"decided"}
    assert await answers(http, simulator, "instagram") == {"201": 20}
    assert up.breaker.state == "closed"
    # The platform that is down was called until its circuit opened, then left alone.
    assert await answers(http, simulator, "tiktok") == {"503": 3}
    assert down.breaker.state == "open"
    tiktok = await rows(db, "tiktok")
    assert {r["state"] for r in tiktok} <= {"queued", "retrying"}
    assert all(r["reason"].startswith("circuit open for tiktok") for r in tiktok)


async def test_a_429_storm_holds_the_platform_until_retry_after(
    db: Database, simulator: str, http: aiohttp.ClientSession
) -> None:
    """A 429 with Retry-After is a pause the platform asked for, not a failure: every call
    waits for it, the circuit stays closed however long the storm, and calls resume."""
    worker = make_worker(TikTokAdapter(http, simulator), db, failures=3, open_s=30, max_attempts=10)
    await behave(http, simulator, "tiktok", rate_limit_rate=1.0, retry_after_s=1)
    for _ in range(4):
        await add_escalation(db)

    started = asyncio.get_running_loop().time()
    assert await worker.step() == 4
    assert await answers(http, simulator, "tiktok") == {"429": 1}
    # No call before Retry-After has passed, whatever is due: the simulator hears nothing.
    await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
    for _ in range(5):
        assert await worker.step() == 0
        await asyncio.sleep(0.1)
    assert await answers(http, simulator, "tiktok") == {"429": 1}
    limited = [r for r in await rows(db, "tiktok") if r["attempts"] == 1]
    assert len(limited) == 1
    assert limited[0]["state"] == "retrying"
    others = [r for r in await rows(db, "tiktok") if r["attempts"] == 0]
    assert all("Retry-After" in r["reason"] for r in others)

    # One call per Retry-After window; twice the breaker's threshold of 429s in a row and
    # the circuit is still closed.
    for calls in range(2, 7):
        await asyncio.sleep(worker.breaker.resume_in_s())
        await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
        await worker.step()
        assert await answers(http, simulator, "tiktok") == {"429": calls}
        assert worker.breaker.state == "closed"
        assert worker.breaker.consecutive == 0
    # Six calls, each after the previous one's Retry-After of one second (loosely).
    assert asyncio.get_running_loop().time() - started >= 4.5

    # The storm ends: calls resume after the last pause and every escalation is decided.
    await behave(http, simulator, "tiktok", rate_limit_rate=0.0)
    for _ in range(10):
        await asyncio.sleep(worker.breaker.resume_in_s())
        await db.pool.execute("UPDATE escalator.escalations SET next_action_at = now()")
        await worker.step()
        if {r["state"] for r in await rows(db, "tiktok")} == {"decided"}:
            break
    assert {r["state"] for r in await rows(db, "tiktok")} == {"decided"}
    assert await answers(http, simulator, "tiktok") == {"429": 6, "201": 4}
    assert worker.breaker.state == "closed"
    assert await outbox_states(db) == ["decided"] * 4  # nothing failed


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.events: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.events.append(dict(record.msg) if isinstance(record.msg, dict) else {})


@pytest.fixture
def error_lines() -> Iterator[Collect]:
    """The error-level events the dispatcher logs while the test runs (structlog's dicts)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG", json=True)  # through the standard library, as in production
    logger = logging.getLogger("helpline.escalator.dispatch")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


async def test_refused_credentials_are_a_configuration_error_not_a_failure(
    db: Database, simulator: str, http: aiohttp.ClientSession, error_lines: Collect
) -> None:
    worker = make_worker(TikTokAdapter(http, simulator), db, open_s=0.5)
    await behave(http, simulator, "tiktok", credentials="rotated-by-the-platform")
    for _ in range(3):
        await add_escalation(db)

    assert await worker.step() == 3
    assert await answers(http, simulator, "tiktok") == {"401": 1}  # open at once
    assert worker.breaker.state == "open"
    for r in await rows(db, "tiktok"):
        assert (r["state"], r["attempts"]) == ("queued", 0)  # not counted, not failed
        assert r["reason"].endswith(CREDENTIALS_REFUSED)
    assert await outbox_states(db) == []
    refused = await db.pool.fetchval(
        "SELECT count(*) FROM escalator.attempts WHERE http_status = 401"
    )
    assert refused == 1

    # The probe is refused again: still open, still not an escalation's failure.
    await asyncio.sleep(worker.breaker.resume_in_s())
    assert await worker.step() == 1
    assert await answers(http, simulator, "tiktok") == {"401": 2}
    assert worker.breaker.state == "open"
    assert {(r["state"], r["attempts"]) for r in await rows(db, "tiktok")} == {("queued", 0)}
    errors = error_lines.events
    assert len(errors) == 1, errors
    assert "configuration error" in errors[0]["event"]
    assert errors[0]["platform"] == "tiktok"
    assert "rotated" not in json.dumps(errors)

    # Fixed: the next probe closes the circuit and the escalations go out.
    await behave(http, simulator, "tiktok", credentials="dev-tiktok-credentials")
    await asyncio.sleep(worker.breaker.resume_in_s())
    assert await worker.step() == 1
    assert worker.breaker.state == "closed"
    await worker.step()
    assert {r["state"] for r in await rows(db, "tiktok")} == {"decided"}
