"""SIGTERM mid-stream: the service exits cleanly within its budget, and after a restart
every input has its output (at least once, nothing lost), with the same event ids."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from helpline_cli.infra import free_port
from helpline_shared.events import CaseOpenedV1, derive_id, utcnow
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, CASES_TRIAGED, REPORTS_SUBMITTED
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker

N = 3000


@pytest.fixture(scope="module")
def broker(infra: Infra, tmp_dir: Path) -> Iterator[str]:
    with dedicated_broker(infra, tmp_dir) as servers:
        yield servers


def start(service: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "helpline_cli.main", "run", service],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            assert proc.poll() is None, "service exited during start-up"
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("service never became ready")


async def read_all(servers: str, topic: str) -> list[Any]:
    return await read_topic(servers, topic)


def opened(i: int, run: str) -> bytes:
    case_id = derive_id("case", run, i)
    return (
        CaseOpenedV1(
            event_id=derive_id("case.opened", case_id),
            case_id=case_id,
            source=run,
            report_id=str(i),
            received_at=utcnow(),
            description="bullying in a video",
            urls=[f"https://www.tiktok.com/@a/video/{i}"],
        )
        .model_dump_json()
        .encode()
    )


def submitted(i: int, run: str) -> bytes:
    return json.dumps(
        {
            "schema_version": 1,
            "source": run,
            "report_id": str(i),
            "reporter": {"name": "R", "email": "r@school.example"},
            "description": "bullying in a video",
            "urls": [f"https://www.tiktok.com/@a/video/{i}"],
        }
    ).encode()


CASES: dict[str, Any] = {
    "triage": (CASES_OPENED.name, opened, CASES_TRIAGED.name),
    "intake": (REPORTS_SUBMITTED.name, submitted, CASES_OPENED.name),
}


@pytest.mark.parametrize("service", ["triage", "intake"])
async def test_sigterm_drains_and_restart_loses_nothing(
    service: str, broker: str, infra: Infra, tmp_dir: Path
) -> None:
    src, make, dst = CASES[service]
    run = f"shutdown-{service}-{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": broker,
        "HELPLINE_DATABASE_URL": await fresh_database(infra, "helpline_shutdown"),
        f"HELPLINE_{service.upper()}_PORT": str(port),
        "HELPLINE_GRACEFUL_TIMEOUT_S": "10",
        "HELPLINE_KAFKA_BATCH_MAX_RECORDS": "100",
    }
    await create_topics(Settings(kafka_bootstrap_servers=broker))
    before = {r.key for r in await read_all(broker, dst)}
    log = tmp_dir / f"{run}.log"
    proc = start(service, env, log)
    await wait_ready(port, proc)

    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(src, make(i, run), key=str(i).encode()) for i in range(N)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        dst, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:  # stop the service while it is mid-stream
        seen = 0
        while seen <= len(before) + 200:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                seen += len(records)
    finally:
        await consumer.stop()
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(proc.wait, 30)
    assert code == 0, log.read_text()[-3000:]
    assert time.monotonic() - started < 20

    proc = start(service, env, log)
    try:
        await wait_ready(port, proc)
        expected = {str(derive_id("case", run, i)) for i in range(N)}
        for _ in range(120):
            records = [r for r in await read_all(broker, dst) if r.key not in before]
            keys = {r.key.decode() for r in records}
            if expected <= keys:
                break
            await asyncio.sleep(0.5)
        assert expected <= keys, f"{len(expected - keys)} of {N} lost"
        ids: dict[str, set[str]] = {}
        for r in records:
            ids.setdefault(r.key.decode(), set()).add(json.loads(r.value)["event_id"])
        assert all(len(v) == 1 for k, v in ids.items() if k in expected)  # same id if repeated
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert "Traceback" not in log.read_text()
