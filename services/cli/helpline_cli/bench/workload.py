"""The benchmark's workload: generated reports, a burst producer, and figures."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings

PLATFORM_URLS = [
    ("https://www.tiktok.com/@acct{i}/video/{n}", 76),
    ("https://www.instagram.com/p/{n}/", 9),
    ("https://www.facebook.com/posts/{n}", 5),
    ("https://www.youtube.com/watch?v={n}", 5),
    ("https://x.com/acct{i}/status/{n}", 3),
    ("https://www.snapchat.com/add/acct{i}{n}", 2),
]


@dataclass(frozen=True)
class Figures:
    name: str
    messages: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, round(q / 100 * (len(data) - 1)))]


def make_reports(n: int, urls_per_report: int, run: str) -> list[bytes]:
    rng = random.Random(n)
    out = []
    for i in range(n):
        urls = [
            rng.choices([u for u, _ in PLATFORM_URLS], [w for _, w in PLATFORM_URLS])[0].format(
                i=i, n=rng.randrange(10**12) * 100 + k
            )
            for k in range(urls_per_report)
        ]
        out.append(
            json.dumps(
                {
                    "schema_version": 1,
                    "source": "bench",
                    "report_id": f"{run}-{i}",
                    # One professional per report, as in a helpline's year (not one
                    # address that every email would queue behind).
                    "reporter": {"name": "Bench Reporter", "email": f"bench{i}@school.example"},
                    "organisation": "Bench School",
                    "description": "Pupils are bullying a teacher in these videos.",
                    "urls": urls,
                }
            ).encode()
        )
    return out


async def produce(settings: Settings, topic: str, payloads: list[bytes]) -> dict[int, float]:
    """Publish as fast as the producer allows; returns the send time of each payload."""
    producer = AIOKafkaProducer(**client_kwargs(settings, "bench"), acks="all", linger_ms=5)
    await producer.start()
    sent: dict[int, float] = {}
    try:
        futures = []
        for i, p in enumerate(payloads):
            sent[i] = time.monotonic()
            futures.append(
                await producer.send(topic, p, key=str(i).encode(), headers=[("i", str(i).encode())])
            )
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent
