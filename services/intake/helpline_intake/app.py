"""Builds the intake service from settings."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaRouter

from helpline_intake.form import build_form_routes
from helpline_intake.http import build_routes
from helpline_intake.usecase import Intake
from helpline_shared.consumer import DeadLetters, batch_subscriber
from helpline_shared.db import Database
from helpline_shared.kafka import build_broker, document_publishers
from helpline_shared.observability import ServiceMetrics
from helpline_shared.service import build_app
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, DEAD_LETTERS, REPORTS_REJECTED, REPORTS_SUBMITTED


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run intake")
    observed = ServiceMetrics("intake")
    broker = build_broker(settings, "intake", [observed.middleware()])
    document_publishers(broker, REPORTS_REJECTED, CASES_OPENED, DEAD_LETTERS["intake"])
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    dead = DeadLetters(
        "intake",
        max_ratio=settings.dlq_max_ratio,
        window=settings.dlq_window,
        counter=observed.dead_letters,
    )
    router = KafkaRouter()
    batch_subscriber(
        router,
        REPORTS_SUBMITTED.name,
        service="intake",
        settings=settings,
        process=Intake(db, broker, dead).process,
        description="Validates, deduplicates and stores reports; opens cases or rejects them.",
    )
    broker.include_router(router)

    async def within_dead_letter_limit() -> bool:
        return not dead.tripped

    return build_app(
        broker,
        service="intake",
        routes=[*build_routes(broker), *build_form_routes(broker), observed.route()],
        checks={"database": db.ready, "dead_letters": within_dead_letter_limit},
        on_startup=[db.open],
        after_shutdown=[db.close],
    )
