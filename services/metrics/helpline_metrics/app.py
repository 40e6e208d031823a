"""Builds the metrics service from settings."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaRouter

from helpline_metrics.http import build_routes
from helpline_metrics.usecase import TOPICS, Metrics
from helpline_shared.consumer import DeadLetters, batch_subscriber
from helpline_shared.db import Database
from helpline_shared.kafka import build_broker, document_publishers
from helpline_shared.observability import ServiceMetrics
from helpline_shared.service import build_app
from helpline_shared.settings import Settings
from helpline_shared.topics import DEAD_LETTERS


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run metrics")
    observed = ServiceMetrics("metrics")
    broker = build_broker(settings, "metrics", [observed.middleware()])
    document_publishers(broker, DEAD_LETTERS["metrics"])
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    dead = DeadLetters(
        "metrics",
        max_ratio=settings.dlq_max_ratio,
        window=settings.dlq_window,
        counter=observed.dead_letters,
    )
    router = KafkaRouter()
    batch_subscriber(
        router,
        *TOPICS,
        service="metrics",
        settings=settings,
        process=Metrics(db, broker, dead).process,
        description="Folds triaged cases, escalation outcomes and rejections into totals.",
    )
    broker.include_router(router)

    async def within_dead_letter_limit() -> bool:
        return not dead.tripped

    return build_app(
        broker,
        service="metrics",
        routes=build_routes(db, observed),
        checks={"database": db.ready, "dead_letters": within_dead_letter_limit},
        on_startup=[db.open],
        after_shutdown=[db.close],
    )
