"""The second baseline: the pipeline's external work in a minimal loop, without the design.

Per URL it does what the pipeline must do at the least: one row written to PostgreSQL
and one notice sent to the platform (the escalator's own adapter, so the same request to
the same simulator); per report, one message out. No outbox, no deduplication, no triage,
no services: one process reads the reports with a plain aiokafka consumer, sends each
batch's notices concurrently (up to the platforms' concurrency), writes the batch's rows in
one statement, publishes, commits its offsets, and reads the next batch.

The raw relay (:mod:`.relay`) says what moving the messages costs; this loop says what the
work costs; the pipeline's ratio to each separates the design's cost from the work's.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from urllib.parse import urlsplit

import aiohttp
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from helpline_cli.bench.relay import bench_topics
from helpline_cli.bench.workload import Figures, produce
from helpline_escalator.adapters.base import Notice, PlatformAdapter
from helpline_escalator.adapters.registry import build_adapters
from helpline_escalator.platform_settings import load_platform_settings
from helpline_shared.events import ReportSubmittedV1
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings

# The bench's hosts (workload.PLATFORM_URLS) by platform: a minimal loop knows no more.
HOSTS = {
    "www.tiktok.com": "tiktok",
    "www.instagram.com": "instagram",
    "www.facebook.com": "facebook",
    "www.youtube.com": "youtube",
    "x.com": "x",
    "www.snapchat.com": "snapchat",
}
_TABLE = """
CREATE TABLE IF NOT EXISTS bench_minimal (
    url_id uuid PRIMARY KEY, report_id text NOT NULL, url text NOT NULL,
    platform text NOT NULL, reference text, decided_at timestamptz NOT NULL DEFAULT now())
"""
_INSERT = """
INSERT INTO bench_minimal (url_id, report_id, url, platform, reference)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (url_id) DO NOTHING
"""


def _notice(url: str, settings: Settings) -> Notice:
    return Notice(
        client_reference=uuid.uuid4(),
        url=url,
        harm_types=("bullying_harassment",),
        urgency="normal",
        explanation="Reported to the helpline by a professional working with children.",
        notifier_name=settings.notifier_name,
        notifier_email=settings.notifier_email,
    )


class _Loop:
    def __init__(
        self, settings: Settings, adapters: dict[str, PlatformAdapter], db: asyncpg.Connection
    ) -> None:
        self._settings = settings
        self._adapters = adapters
        self._db = db
        self._slots = {slug: asyncio.Semaphore(settings.platform_concurrency) for slug in adapters}

    async def _send(self, url: str) -> tuple[str, str | None]:
        platform = HOSTS[urlsplit(url).hostname or ""]
        async with self._slots[platform]:
            result = await self._adapters[platform].submit(_notice(url, self._settings))
        return platform, result.reference

    async def handle(self, reports: list[ReportSubmittedV1]) -> None:
        """Send every URL of the batch, then write one row per URL in one statement."""
        urls = [(r.report_id, u) for r in reports for u in dict.fromkeys(r.urls)]
        sent = await asyncio.gather(*(self._send(u) for _, u in urls))
        await self._db.execute(
            _INSERT,
            [uuid.uuid4() for _ in urls],
            [rid for rid, _ in urls],
            [u for _, u in urls],
            [p for p, _ in sent],
            [ref for _, ref in sent],
        )


async def _run_loop(  # noqa: PLR0917
    settings: Settings, src: str, dst: str, n: int, group: str, ready: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        src,
        **client_kwargs(settings, group),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    producer = AIOKafkaProducer(**client_kwargs(settings, group), acks="all", linger_ms=5)
    db = await asyncpg.connect(settings.database_url)
    sessions: list[aiohttp.ClientSession] = []

    def client_for(slug: str) -> aiohttp.ClientSession:
        sessions.append(
            aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=settings.platform_timeout_s),
                connector=aiohttp.TCPConnector(limit=settings.platform_concurrency),
            )
        )
        return sessions[-1]

    await consumer.start()
    await producer.start()
    done = 0
    try:
        await db.execute(_TABLE)
        adapters = build_adapters(client_for, load_platform_settings(settings))
        loop = _Loop(settings, {p: adapters[p] for p in set(HOSTS.values())}, db)
        while not consumer.assignment():  # join the group before the clock starts
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while done < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            records = [r for part in batch.values() for r in part]
            if not records:
                continue
            await loop.handle([ReportSubmittedV1.model_validate_json(r.value) for r in records])
            futures = [
                await producer.send(dst, r.value, key=r.key, headers=list(r.headers))
                for r in records
            ]
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(records)
    finally:
        await consumer.stop()
        await producer.stop()
        await db.close()
        for s in sessions:
            await s.close()


async def minimal_loop(settings: Settings, payloads: list[bytes]) -> Figures:
    """Reports through the minimal loop, timed from publish to their message out."""
    run = uuid.uuid4().hex[:8]
    src, dst = f"bench.minimal.{run}.in", f"bench.minimal.{run}.out"
    await bench_topics(settings, [src, dst])
    n = len(payloads)
    index = {json.loads(p)["report_id"]: i for i, p in enumerate(payloads)}
    received: dict[int, float] = {}
    sink = AIOKafkaConsumer(
        dst,
        **client_kwargs(settings, "bench-minimal-sink"),
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=10,
    )
    await sink.start()

    async def drain() -> None:
        while len(received) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    received.setdefault(index[json.loads(r.value)["report_id"]], now)

    ready = asyncio.Event()
    worker = asyncio.create_task(_run_loop(settings, src, dst, n, f"bench-minimal-{run}", ready))
    await asyncio.wait_for(ready.wait(), 120)
    sink_task = asyncio.create_task(drain())
    sent = await produce(settings, src, payloads)
    await asyncio.wait_for(asyncio.gather(sink_task, worker), 600)
    await sink.stop()
    start = min(sent.values())
    return Figures(
        "minimal loop: 1 DB row + 1 platform call per URL",
        n,
        max(received.values()) - start,
        [(received[i] - sent[i]) * 1000 for i in range(n)],
    )
