"""Each service's Prometheus metrics, served at `GET /metrics` on its HTTP port.

FastStream's Kafka middleware records messages received and published, processing time,
errors and in-flight batches per topic; the service adds its own counters (dead letters)
and gauges read at scrape time, some of them from the database (the outbox backlog).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from helpline_shared.service import endpoint

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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
