"""The escalator as deployed (its app, served over HTTP, on the real database, broker and
simulator) with one platform in an outage: that platform's circuit opens, as `/metrics` and
the readiness detail show, while the escalator stays ready and another platform's
escalations keep being decided; when the platform recovers a probe closes the circuit and
its escalations go out. The platform's credentials appear in none of the answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpline_escalator.app import create_app
from helpline_shared.db import Database
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.helpers import serve_simulator
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_dispatcher import add_escalation

SECRET = "tiktok-partner-token-5521-never-shown"


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 60) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        if value := await check():
            return value
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.2)


def sample(metrics: str, name: str, platform: str) -> float | None:
    prefix = f'{name}{{platform="{platform}"}} '
    for line in metrics.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


async def states(db: Database, platform: str) -> set[str]:
    rows = await db.pool.fetch(
        "SELECT state FROM escalator.escalations WHERE platform = $1", platform
    )
    return {r["state"] for r in rows}


async def test_an_outage_opens_the_circuit_on_metrics_and_readiness_and_a_probe_closes_it(
    infra: Infra, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__CREDENTIALS", SECRET)
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BREAKER_FAILURES", "2")
    monkeypatch.setenv("HELPLINE_PLATFORMS__TIKTOK__BREAKER_OPEN_S", "1")
    async with serve_simulator() as sim:
        async with httpx.AsyncClient(base_url=sim) as control:
            r = await control.post(
                "/_sim/config",
                json={"platforms": {"tiktok": {"credentials": SECRET, "error_rate": 1.0}}},
            )
            assert r.status_code == 200
        with dedicated_broker(infra, tmp_dir) as servers:
            database_url = await fresh_database(infra, "helpline_circuit_served")
            settings = Settings(
                kafka_bootstrap_servers=servers,
                database_url=database_url,
                platform_base_url=sim,
                escalation_retry_base_s=0.05,
            )
            await create_topics(settings)
            db = Database(database_url)
            await db.open()
            try:
                async with (
                    served(create_app(settings)) as url,
                    httpx.AsyncClient(base_url=url, timeout=5) as client,
                ):
                    for _ in range(3):
                        await add_escalation(db)

                    async def tiktok_open() -> str | None:
                        text = (await client.get("/metrics")).text
                        gauge = sample(text, "helpline_platform_circuit_open", "tiktok")
                        return text if gauge == 1.0 else None

                    metrics = await eventually(tiktok_open, "tiktok's circuit open on /metrics")
                    assert sample(metrics, "helpline_platform_circuit_open", "instagram") == 0.0
                    ready = await client.get("/health/ready")
                    assert ready.status_code == 200  # one platform down is not unready
                    assert "open_circuits" in ready.text
                    assert "circuit open for tiktok" in ready.text
                    assert "instagram" not in ready.text.split("open_circuits", 1)[1]
                    live = await client.get("/health/live")
                    for answer in (metrics, ready.text, live.text):
                        assert SECRET not in answer

                    # Meanwhile another platform's escalations are decided.
                    await add_escalation(
                        db,
                        platform="instagram",
                        url="https://www.instagram.com/p/flows/",
                        normalized_url="https://www.instagram.com/p/flows/",
                    )

                    async def instagram_decided() -> bool:
                        return await states(db, "instagram") == {"decided"}

                    await eventually(instagram_decided, "instagram decided during the outage")
                    assert "decided" not in await states(db, "tiktok")

                    # The platform recovers: a probe closes the circuit, the backlog goes out.
                    async with httpx.AsyncClient(base_url=sim) as control:
                        r = await control.post(
                            "/_sim/config", json={"platforms": {"tiktok": {"error_rate": 0}}}
                        )
                        assert r.status_code == 200

                    async def tiktok_closed() -> bool:
                        text = (await client.get("/metrics")).text
                        return sample(text, "helpline_platform_circuit_open", "tiktok") == 0.0

                    await eventually(tiktok_closed, "tiktok's circuit closed again")

                    async def tiktok_decided() -> bool:
                        return await states(db, "tiktok") == {"decided"}

                    await eventually(tiktok_decided, "tiktok's escalations decided")
                    ready = await client.get("/health/ready")
                    assert "circuit open for tiktok" not in ready.text
                    assert SECRET not in (await client.get("/metrics")).text
            finally:
                await db.close()
