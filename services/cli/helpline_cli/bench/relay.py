"""The baseline: a raw aiokafka relay through as many stages as the pipeline has."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpline_cli.bench.workload import Figures, produce
from helpline_shared.events import ReportSubmittedV1
from helpline_shared.kafka import client_kwargs
from helpline_shared.settings import Settings

STAGES = 3


async def _relay_stage(  # noqa: PLR0917
    settings: Settings, src: str, dst: str, n: int, group: str, ready: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        src,
        **client_kwargs(settings, group),
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**client_kwargs(settings, group), acks="all", linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    try:
        while not consumer.assignment():  # join the group before the clock starts
            await consumer.getmany(timeout_ms=100)
        ready.set()
        while done < n:
            batch = await consumer.getmany(timeout_ms=100, max_records=500)
            futures = []
            for records in batch.values():
                for r in records:
                    ReportSubmittedV1.model_validate_json(r.value)
                    futures.append(
                        await producer.send(dst, r.value, key=r.key, headers=list(r.headers))
                    )
            await asyncio.gather(*futures)
            if futures:
                await consumer.commit()
            done += len(futures)
    finally:
        await consumer.stop()
        await producer.stop()


async def bench_topics(settings: Settings, topics: list[str]) -> None:
    """Create a baseline's own topics (the broker creates none by itself)."""
    admin = AIOKafkaAdminClient(**client_kwargs(settings, "bench-admin"))
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(t, settings.kafka_topic_partitions, settings.kafka_replication_factor)
                for t in topics
            ]
        )
    finally:
        await admin.close()


async def raw_relay(settings: Settings, payloads: list[bytes]) -> Figures:
    run = uuid.uuid4().hex[:8]
    topics = [f"bench.relay.{run}.{i}" for i in range(STAGES + 1)]
    await bench_topics(settings, topics)
    n = len(payloads)
    received: dict[int, float] = {}
    sink = AIOKafkaConsumer(
        topics[-1],
        **client_kwargs(settings, "bench-sink"),
        group_id=None,
        auto_offset_reset="earliest",
    )
    await sink.start()

    async def drain() -> None:
        while len(received) < n:
            batch = await sink.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    received[int(dict(r.headers)["i"])] = now

    ready = [asyncio.Event() for _ in range(STAGES)]
    stages = [
        asyncio.create_task(
            _relay_stage(settings, topics[i], topics[i + 1], n, f"bench-{run}-{i}", ready[i])
        )
        for i in range(STAGES)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 120)
    await sink.getmany(timeout_ms=200)
    sink_task = asyncio.create_task(drain())
    sent = await produce(settings, topics[0], payloads)
    await asyncio.wait_for(asyncio.gather(sink_task, *stages), 600)
    await sink.stop()
    start = min(sent.values())
    return Figures(
        f"raw aiokafka relay, {STAGES} stages",
        n,
        max(received.values()) - start,
        [(received[i] - sent[i]) * 1000 for i in range(n)],
    )
