"""How long a consumer takes to be ready and consuming again after a SIGKILL.

Starts an embedded broker and triage, then three times: kills triage with SIGKILL,
restarts it, and prints how long until `/health/ready` answers 200 and until a new case is
triaged. Pass extra settings as JSON, e.g.
`.venv/bin/python scripts/measure_restart.py '{"HELPLINE_KAFKA_SESSION_TIMEOUT_MS": "10000"}'`.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from helpline_cli.infra import free_port, start_tansu
from helpline_shared.events import CaseOpenedV1, derive_id, utcnow
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings


def opened(case_id: uuid.UUID) -> bytes:
    return (
        CaseOpenedV1(
            event_id=derive_id("case.opened", case_id),
            case_id=case_id,
            source="measure",
            report_id=str(case_id),
            received_at=utcnow(),
            description="bullying",
            urls=["https://www.tiktok.com/@a/video/1"],
        )
        .model_dump_json()
        .encode()
    )


async def ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/health/ready", timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200


async def wait_ready(port: int) -> None:
    while True:
        if await ready(port):
            return
        await asyncio.sleep(0.05)


async def main(extra: dict[str, str], runs: int = 3) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="helpline-restart-"))
    broker_port = free_port()
    tansu = start_tansu(broker_port, log_path=tmp / "tansu.log")
    servers = f"127.0.0.1:{broker_port}"
    await asyncio.sleep(1)
    await create_topics(Settings(kafka_bootstrap_servers=servers))
    port = free_port()
    env = {
        **os.environ,
        "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
        "HELPLINE_TRIAGE_PORT": str(port),
        **extra,
    }

    def start() -> subprocess.Popen[bytes]:
        with (tmp / "triage.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "helpline_cli.main", "run", "triage"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    proc = start()
    await wait_ready(port)
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    consumer = AIOKafkaConsumer(
        "helpline.cases.triaged", bootstrap_servers=servers, auto_offset_reset="latest"
    )
    await producer.start()
    await consumer.start()
    await consumer.getmany(timeout_ms=500)
    try:
        for run in range(runs):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            started = time.monotonic()
            proc = start()
            await wait_ready(port)
            ready_s = time.monotonic() - started
            case_id = uuid.uuid4()
            await producer.send_and_wait(
                "helpline.cases.opened", opened(case_id), key=str(case_id).encode()
            )
            seen = False
            while not seen:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    seen = seen or any(r.key == str(case_id).encode() for r in records)
            print(
                f"{extra or 'defaults'} run {run + 1}/{runs}: ready after {ready_s:.1f} s, "
                f"consuming after {time.monotonic() - started:.1f} s",
                flush=True,
            )
    finally:
        proc.terminate()
        proc.wait()
        await producer.stop()
        await consumer.stop()
        tansu.terminate()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
