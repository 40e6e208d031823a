"""Each service's Prometheus metrics, served at `GET /metrics` on its HTTP port.

FastStream's Kafka middleware records messages received and published, processing time,
errors and in-flight batches per topic; the service adds its own counters (dead letters).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import CollectorRegistry, Counter, generate_latest
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

    def middleware(self) -> KafkaPrometheusMiddleware:
        return KafkaPrometheusMiddleware(
            registry=self.registry, app_name=f"helpline-{self.service}"
        )

    def route(self, extra: Callable[[], Awaitable[bytes]] | None = None) -> tuple[str, ASGIApp]:
        """`GET /metrics`: this registry, followed by whatever `extra` renders."""

        async def metrics(_: Request) -> Response:
            body = generate_latest(self.registry)
            if extra is not None:
                body += await extra()
            return Response(body, media_type=CONTENT_TYPE)

        return ("/metrics", endpoint(metrics))
