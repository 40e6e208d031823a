"""`helpline publish`: put reports onto `helpline.reports.submitted` as another system would.

Input: a JSON file holding one report or a list of reports, or JSON lines on standard input
(`-` or no file). Each is sent as-is (the broker sees exactly the bytes another system
would send), keyed by its `report_id` when it has one. Nothing is validated here: intake
validates, and refused reports appear on `helpline.reports.rejected`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED


def read_reports(path: str | None) -> list[bytes]:
    if path in (None, "-"):
        lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
        return [line.encode() for line in lines]
    text = Path(path).read_text(encoding="utf-8")
    data: Any = json.loads(text)
    items = data if isinstance(data, list) else [data]
    return [json.dumps(item).encode() for item in items]


def _key(raw: bytes) -> bytes | None:
    try:
        report_id = json.loads(raw).get("report_id")
    except (ValueError, AttributeError):
        return None
    return str(report_id).encode() if report_id else None


async def publish(settings: Settings, payloads: list[bytes], topic: str) -> int:
    producer = AIOKafkaProducer(
        **client_kwargs(settings, "publish"),
        acks="all",
        enable_idempotence=settings.kafka_enable_idempotence,
    )
    await producer.start()
    try:
        futures = [await producer.send(topic, p, key=_key(p)) for p in payloads]
        for f in futures:
            await f
    finally:
        await producer.stop()
    return len(payloads)


DEFAULT_TOPIC = REPORTS_SUBMITTED.name
