"""The parts every consuming service is built from, assembled once.

A service gets a broker (with Prometheus middleware, and OpenTelemetry's when tracing is
configured: see :mod:`helpline_shared.tracing`), its dead-letter bound, a batch subscriber
per input, and an app with health probes (broker, dead-letter limit, and any checks it
adds) and `/metrics`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaBroker, KafkaRouter
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from helpline_shared import tracing
from helpline_shared.consumer import BatchRunner, ConsumerHealth, Record, batch_subscriber
from helpline_shared.deadletters import DeadLetters
from helpline_shared.kafka import build_broker, document_publishers
from helpline_shared.observability import ServiceMetrics
from helpline_shared.service import (
    Hook,
    ReadinessCheck,
    ReadinessDetail,
    broker_check,
    build_app,
)
from helpline_shared.settings import Settings
from helpline_shared.topics import DEAD_LETTERS, Topic


class ServiceWiring:
    def __init__(
        self,
        settings: Settings,
        service: str,
        *,
        publishes: Sequence[Topic],
        redact: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.settings = settings
        self.service = service
        self.observed = ServiceMetrics(service)
        self.tracing = tracing.configure(service)
        middlewares = [self.observed.middleware()]
        if self.tracing is not None:
            middlewares.append(self.tracing.middleware())
        self.broker: KafkaBroker = build_broker(settings, service, middlewares)
        if self.tracing is not None:
            self.tracing.register(self.broker)
        document_publishers(self.broker, *publishes, DEAD_LETTERS[service])
        self.dead_letters = DeadLetters(
            service,
            max_ratio=settings.dlq_max_ratio,
            window=settings.dlq_window,
            hold_s=settings.dlq_hold_s,
            counter=self.observed.dead_letters,
            redact=redact,
        )
        self.health = ConsumerHealth(settings.consumer_stuck_after_s)
        self.observed.watch(self.dead_letters, self.health)
        self.observed.consumer_lag(self.broker)

    def consume(
        self,
        *topics: str,
        process: Callable[[Sequence[Record]], Awaitable[None]],
        description: str,
        depends_on: Sequence[Callable[[], Awaitable[bool]]] = (),
        background: bool = False,
    ) -> None:
        """Subscribe `process` to `topics` in batches under the dead-letter protocol (see
        :class:`~helpline_shared.consumer.BatchRunner`). After an outage the consumer resumes
        as soon as the broker and every check in `depends_on` answer again. A `background`
        consumer (its readers are people, not the next stage) fetches less eagerly."""
        router = KafkaRouter()
        process = self.observed.timed(process)
        if self.tracing is not None:
            process = self.tracing.per_record(process)
        runner = BatchRunner(
            self.service,
            process,
            self.dead_letters,
            self.broker,
            health=self.health,
            probes=[broker_check(self.broker), *depends_on],
            max_batch_failures=self.settings.consumer_max_batch_failures,
        )
        batch_subscriber(
            router,
            *topics,
            service=self.service,
            settings=self.settings,
            runner=runner,
            description=description,
            background=background,
        )
        self.broker.include_router(router)

    async def within_dead_letter_limit(self) -> bool:
        return not self.dead_letters.tripped

    async def consuming(self) -> bool:
        """Has its partitions (after a rebalance) and no batch failing for too long."""
        return self.health.ready

    def app(
        self,
        *,
        routes: Sequence[tuple[str, ASGIApp]] = (),
        metrics_extra: Callable[[], Awaitable[bytes]] | None = None,
        checks: dict[str, ReadinessCheck] | None = None,
        details: dict[str, ReadinessDetail] | None = None,
        api: FastAPI | None = None,
        **hooks: Sequence[Hook],
    ) -> AsgiFastStream:
        """The service's app; `hooks` are `build_app`'s on_/after_ startup/shutdown hooks;
        `api` answers every path the others do not. With tracing, each of `routes` and each
        request to `api` gets a server span (named by the API's route template)."""
        traced_api: ASGIApp | None = api
        if self.tracing is not None:
            routes = [(path, self.tracing.server(app, path)) for path, app in routes]
            if api is not None:
                traced_api = _traced(self.tracing, api)
            hooks["after_shutdown"] = [*hooks.get("after_shutdown", ()), self.tracing.shutdown]
        return build_app(
            self.broker,
            service=self.service,
            routes=[*routes, self.observed.route(metrics_extra)],
            checks={
                **(checks or {}),
                "dead_letters": self.within_dead_letter_limit,
                "consuming": self.consuming,
            },
            details=details,
            api=traced_api,
            **hooks,
        )


def _traced(tracer: tracing.Tracing, api: FastAPI) -> ASGIApp:
    """`api` with a server span per HTTP request named by the matched route's template
    (`/v1/cases/{case_id}`, not the path, so span names stay few)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        template = "(no route)"
        for route in api.router.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                template = getattr(route, "path", template)
                break
        await tracer.server(api, template)(scope, receive, send)

    return app
