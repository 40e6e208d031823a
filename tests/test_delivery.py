"""Delivery through the real FastStream subscriber and its commit path (services run as
processes on a broker of their own and a real database): a message no parser can read, a
poison message too large to reject, and a consumer that cannot make progress."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from helpline_cli.infra import free_port
from helpline_shared.events import CaseOpenedV1, derive_id, utcnow
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASES_OPENED,
    CASES_TRIAGED,
    DEAD_LETTERS,
    REPORTS_REJECTED,
    REPORTS_SUBMITTED,
)
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.test_shutdown import start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def broker(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dedicated_broker(infra, tmp_path_factory.mktemp("delivery")) as servers:
        yield servers


class Service:
    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = int(env[f"HELPLINE_{name.upper()}_PORT"])
        self.log = log
        self.proc = start(name, env, log)

    async def ready(self) -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{self.port}/health/ready", timeout=5)
        return r.status_code, r.json()

    async def wait_ready(self, timeout_s: float = 60) -> None:
        for _ in range(int(timeout_s * 5)):
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if (await self.ready())[0] == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"{self.name} not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


@pytest.fixture
async def service_env(broker: str, infra: Infra) -> tuple[dict[str, str], str]:
    await create_topics(Settings(kafka_bootstrap_servers=broker))
    url = await fresh_database(infra, "helpline_delivery")
    env = {
        **os.environ,
        "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": broker,
        "HELPLINE_DATABASE_URL": url,
        "HELPLINE_INTAKE_PORT": str(free_port()),
        "HELPLINE_TRIAGE_PORT": str(free_port()),
        "HELPLINE_GRACEFUL_TIMEOUT_S": "5",
        "HELPLINE_LOG_JSON": "true",
    }
    return env, url


def report(source: str, report_id: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "source": source,
            "report_id": report_id,
            "reporter": {"name": "A Teacher", "email": "teacher@school.example"},
            "description": "Pupils posted a video mocking a teacher.",
            "urls": ["https://www.tiktok.com/@a/video/1"],
        }
    ).encode()


async def send(broker: str, topic: str, messages: list[tuple[bytes, bytes, list[Any]]]) -> None:
    """Publishes `messages` (key, value, headers) to partition 0 in one request."""
    producer = AIOKafkaProducer(
        bootstrap_servers=broker, acks="all", linger_ms=50, max_request_size=4_000_000
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers, partition=0)
            for key, value, headers in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def cases(url: str, source: str) -> set[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT report_id FROM intake.reports WHERE source = $1", source)
    finally:
        await conn.close()
    return {r["report_id"] for r in rows}


async def wait_for_cases(url: str, source: str, expected: set[str], timeout_s: float) -> None:
    for _ in range(int(timeout_s * 4)):
        if expected <= await cases(url, source):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"missing cases: {expected - await cases(url, source)}")


async def test_intake_dead_letters_a_message_with_an_undecodable_header_alone(
    broker: str, service_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, url = service_env
    source = f"hdr-{uuid.uuid4().hex[:6]}"
    intake = Service("intake", env, tmp_path / "intake.log")
    try:
        await intake.wait_ready()
        await send(
            broker,
            REPORTS_SUBMITTED.name,
            [
                (b"r1", report(source, "r1"), []),
                (b"r2", report(source, "r2"), [("x", b"\xff\xfe")]),
                (b"r3", report(source, "r3"), [("ok", b"fine")]),
            ],
        )
        await wait_for_cases(url, source, {"r1", "r3"}, timeout_s=60)
        dead = await read_topic(
            broker,
            DEAD_LETTERS["intake"].name,
            keep=lambda r: source.encode() in (r.value or b""),
            expected=1,
        )
        assert len(dead) == 1
        headers = dict(dead[0].headers)
        assert b"not valid UTF-8" in headers["dlq_error"]
        assert headers["dlq_source_topic"] == REPORTS_SUBMITTED.name.encode()
        assert "r2" not in await cases(url, source)
    finally:
        intake.stop()


def opened(case_id: uuid.UUID, marker: str) -> bytes:
    return (
        CaseOpenedV1(
            event_id=derive_id("case.opened", case_id),
            case_id=case_id,
            source=marker,
            report_id=str(case_id),
            received_at=utcnow(),
            description="pupils posted a bullying video",
            urls=["https://www.tiktok.com/@a/video/1"],
        )
        .model_dump_json()
        .encode()
    )


async def test_triage_dead_letters_a_message_with_an_undecodable_header_alone(
    broker: str, service_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = service_env
    marker = f"hdr-{uuid.uuid4().hex[:6]}"
    good, bad = uuid.uuid4(), uuid.uuid4()
    triage = Service("triage", env, tmp_path / "triage.log")
    try:
        await triage.wait_ready()
        await send(
            broker,
            CASES_OPENED.name,
            [
                (str(bad).encode(), opened(bad, marker), [("ce_id", b"\xc3\x28")]),
                (str(good).encode(), opened(good, marker), []),
            ],
        )
        triaged = await read_topic(
            broker,
            CASES_TRIAGED.name,
            keep=lambda r: str(good).encode() == r.key,
            expected=1,
            timeout_s=60,
        )
        assert len(triaged) == 1
        dead = await read_topic(
            broker,
            DEAD_LETTERS["triage"].name,
            keep=lambda r: marker.encode() in (r.value or b""),
            expected=1,
        )
        assert [r.key for r in dead] == [str(bad).encode()]
    finally:
        triage.stop()


async def test_a_poison_message_too_large_to_reject_cannot_block_its_partition(
    broker: str, service_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, url = service_env
    source = f"big-{uuid.uuid4().hex[:6]}"
    huge_key = b"k" * 600_000
    poison = json.dumps({"schema_version": 1, "source": source, "report_id": 7}).encode()
    intake = Service("intake", env, tmp_path / "intake.log")
    try:
        await intake.wait_ready()
        await send(
            broker,
            REPORTS_SUBMITTED.name,
            [
                (b"before", report(source, "before"), []),
                (huge_key, poison, []),
                (b"after", report(source, "after"), []),
            ],
        )
        await wait_for_cases(url, source, {"before", "after"}, timeout_s=90)

        def about(r: Any) -> bool:
            return source.encode() in (r.value or b"") or (r.key or b"").startswith(b"kkkk")

        for _ in range(60):
            rejected = await read_topic(broker, REPORTS_REJECTED.name, keep=about)
            dead = await read_topic(broker, DEAD_LETTERS["intake"].name, keep=about)
            published = rejected + dead
            if published:
                break
            await asyncio.sleep(1)
        assert len(published) == 1, (len(rejected), len(dead))
        opened_keys = {
            json.loads(r.value)["report_id"]
            for r in await read_topic(
                broker, CASES_OPENED.name, keep=lambda r: source.encode() in (r.value or b"")
            )
        }
        assert opened_keys == {"before", "after"}
        assert all(len(r.key or b"") <= 1024 for r in published)
        assert all(len(r.value or b"") < 1_000_000 for r in published)
        _, detail = await intake.ready()
        assert detail["checks"]["consuming"] is True
        # Restarting does not publish it again: its offset was committed.
        intake.stop()
        intake = Service("intake", env, tmp_path / "intake.log")
        await intake.wait_ready()
        await asyncio.sleep(3)
        again = await read_topic(broker, REPORTS_REJECTED.name, keep=about) + await read_topic(
            broker, DEAD_LETTERS["intake"].name, keep=about
        )
        assert len(again) == 1
    finally:
        intake.stop()


async def test_after_a_sigkill_ready_means_it_has_its_partitions_and_consumes(
    broker: str, service_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = service_env
    triage = Service("triage", env, tmp_path / "triage.log")
    await triage.wait_ready()
    triage.proc.kill()
    triage.proc.wait(10)
    triage = Service("triage", env, tmp_path / "triage.log")
    try:
        seen: list[tuple[int, bool]] = []
        for _ in range(600):
            try:
                code, body = await triage.ready()
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
                continue
            seen.append((code, body["checks"]["consuming"]))
            if code == 200:
                break
            await asyncio.sleep(0.05)
        # The HTTP server answers before the group hands back the partitions: not ready.
        assert seen[0] == (503, False), seen[:3]
        assert seen[-1] == (200, True)
        case_id = uuid.uuid4()
        await send(broker, CASES_OPENED.name, [(str(case_id).encode(), opened(case_id, "r"), [])])
        triaged = await read_topic(
            broker,
            CASES_TRIAGED.name,
            keep=lambda r: r.key == str(case_id).encode(),
            expected=1,
            timeout_s=30,
        )
        assert len(triaged) == 1
    finally:
        triage.stop()


async def test_a_flood_of_bad_messages_trips_the_bound_visibly_then_it_recovers(
    broker: str, service_env: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, url = service_env
    env = {**env, "HELPLINE_DLQ_WINDOW": "20", "HELPLINE_DLQ_HOLD_S": "4"}
    source = f"flood-{uuid.uuid4().hex[:6]}"
    intake = Service("intake", env, tmp_path / "intake.log")
    try:
        await intake.wait_ready()
        flood = [
            (f"{source}-bad-{i}".encode(), json.dumps({"source": source, "n": i}).encode(), [])
            for i in range(60)
        ]
        await send(broker, REPORTS_SUBMITTED.name, flood)
        states: list[tuple[int, bool, str]] = []
        async with httpx.AsyncClient() as client:
            for _ in range(600):
                code, body = await intake.ready()
                text = (await client.get(f"http://127.0.0.1:{intake.port}/metrics")).text
                tripped = [
                    line
                    for line in text.splitlines()
                    if line.startswith("helpline_dead_letter_limit_tripped")
                ]
                states.append((code, body["checks"]["dead_letters"], tripped[0].split()[-1]))
                if states[-1][0] == 503 or (len(states) > 100 and states[-1][0] == 200):
                    break
                await asyncio.sleep(0.1)
        assert (503, False, "1.0") in states, states[-5:]
        await send(broker, REPORTS_SUBMITTED.name, [(b"ok", report(source, "ok"), [])])
        await wait_for_cases(url, source, {"ok"}, timeout_s=90)
        await intake.wait_ready()
        prefix = f"{source}-bad-".encode()
        rejected = await read_topic(
            broker, REPORTS_REJECTED.name, keep=lambda r: (r.key or b"").startswith(prefix)
        )
        dead = await read_topic(
            broker, DEAD_LETTERS["intake"].name, keep=lambda r: (r.key or b"").startswith(prefix)
        )
        # Every bad message on a topic exactly once, after the hold released them.
        assert sorted(r.key for r in rejected + dead) == sorted(k for k, _, _ in flood)
    finally:
        intake.stop()
