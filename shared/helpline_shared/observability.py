"""Each service's Prometheus metrics, served at `GET /metrics` on its HTTP port.

FastStream's Kafka middleware records messages received and published, processing time,
errors and in-flight batches per topic; the service adds its own counters (dead letters),
the time each consumed batch takes to process (`helpline_batch_processing_seconds`), and
gauges read at scrape time: its consumer lag per partition (`helpline_consumer_lag`), and
some read from the database (the outbox backlog).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from helpline_shared.service import endpoint

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
T = TypeVar("T")


class ServiceMetrics:
    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.dead_letters = Counter(
            "helpline_dead_letters",
            "Messages sent to the service's dead-letter topic.",
            ["service"],
            registry=self.registry,
        ).labels(service)
        self._refresh: list[Callable[[], Awaitable[None]]] = []
        self._batch_seconds = Histogram(
            "helpline_batch_processing_seconds",
            "Time the service took to process a consumed batch (or, while a poison message"
            " is isolated, part of one), successful or not.",
            ["service"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        ).labels(service)

    def timed(
        self, process: Callable[[Sequence[T]], Awaitable[None]]
    ) -> Callable[[Sequence[T]], Awaitable[None]]:
        """`process`, observing each call's duration in `helpline_batch_processing_seconds`."""

        async def run(batch: Sequence[T]) -> None:
            start = time.perf_counter()
            try:
                await process(batch)
            finally:
                self._batch_seconds.observe(time.perf_counter() - start)

        return run

    def consumer_lag(self, broker: Any, timeout_s: float = 2.0) -> None:
        """`helpline_consumer_lag{service,topic,partition}`: at each scrape, for every
        partition assigned to the service's consumers, the end offset minus the group's
        committed offset (the records not yet processed and committed). A partition whose
        offsets cannot be read within `timeout_s` is left out of that scrape."""
        gauge = Gauge(
            "helpline_consumer_lag",
            "Records on an assigned partition not yet committed by the consumer group.",
            ["service", "topic", "partition"],
            registry=self.registry,
        )

        async def read(consumer: Any) -> dict[Any, int]:
            parts = sorted(consumer.assignment(), key=lambda tp: (tp.topic, tp.partition))
            if not parts:
                return {}
            ends = await consumer.end_offsets(parts)
            committed = await asyncio.gather(*(consumer.committed(tp) for tp in parts))
            return {tp: max(0, ends[tp] - (c or 0)) for tp, c in zip(parts, committed, strict=True)}

        async def refresh() -> None:
            gauge.clear()
            for subscriber in broker.subscribers:
                consumer = getattr(subscriber, "consumer", None)
                if consumer is None:
                    continue
                try:
                    lags = await asyncio.wait_for(read(consumer), timeout_s)
                except Exception:  # broker away or rebalancing: no lag this scrape
                    lags = {}
                for tp, lag in lags.items():
                    gauge.labels(self.service, tp.topic, str(tp.partition)).set(lag)

        self._refresh.append(refresh)

    def outbox_backlog(self, read: Callable[[], Awaitable[float]]) -> None:
        """`helpline_outbox_oldest_pending_seconds{service}`: the age of the oldest outbox
        row not yet published (0 when none), from `read`, awaited at each scrape (see
        :mod:`helpline_shared.outbox_backlog`)."""
        gauge = Gauge(
            "helpline_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row not yet published to Kafka (0 when none).",
            ["service"],
            registry=self.registry,
        ).labels(self.service)

        async def refresh() -> None:
            gauge.set(await read())

        self._refresh.append(refresh)

    def watch(self, dead_letters: Any, health: Any) -> None:
        """Gauges read at scrape time: the dead-letter bound's state and the consumer's."""
        Gauge(
            "helpline_dead_letter_limit_tripped",
            "1 while the dead-letter bound holds the consumer's batch.",
            ["service"],
            registry=self.registry,
        ).labels(self.service).set_function(lambda: float(dead_letters.tripped))
        Gauge(
            "helpline_dead_letter_limit_trips",
            "Times the dead-letter bound tripped since the service started.",
            ["service"],
            registry=self.registry,
        ).labels(self.service).set_function(lambda: float(dead_letters.trips))
        Gauge(
            "helpline_consumer_ready",
            "1 when the consumer has its partitions and no batch is stuck.",
            ["service"],
            registry=self.registry,
        ).labels(self.service).set_function(lambda: float(health.ready))
        Gauge(
            "helpline_consumer_batch_failures",
            "Consecutive failures of the batch in hand.",
            ["service"],
            registry=self.registry,
        ).labels(self.service).set_function(lambda: float(health.failures))

    def middleware(self) -> KafkaPrometheusMiddleware:
        return KafkaPrometheusMiddleware(
            registry=self.registry, app_name=f"helpline-{self.service}"
        )

    def route(self, extra: Callable[[], Awaitable[bytes]] | None = None) -> tuple[str, ASGIApp]:
        """`GET /metrics`: this registry, followed by whatever `extra` renders."""

        async def metrics(_: Request) -> Response:
            for refresh in self._refresh:
                await refresh()
            body = generate_latest(self.registry)
            if extra is not None:
                body += await extra()
            return Response(body, media_type=CONTENT_TYPE)

        return ("/metrics", endpoint(metrics))
