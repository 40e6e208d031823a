"""Builds the triage service from settings. Triage keeps no state of its own."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaRouter

from helpline_shared.consumer import DeadLetters, batch_subscriber
from helpline_shared.kafka import build_broker, document_publishers
from helpline_shared.observability import ServiceMetrics
from helpline_shared.service import build_app
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, CASES_TRIAGED, DEAD_LETTERS
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage


def create_app(settings: Settings) -> AsgiFastStream:
    observed = ServiceMetrics("triage")
    broker = build_broker(settings, "triage", [observed.middleware()])
    document_publishers(broker, CASES_TRIAGED, DEAD_LETTERS["triage"])
    dead = DeadLetters(
        "triage",
        max_ratio=settings.dlq_max_ratio,
        window=settings.dlq_window,
        counter=observed.dead_letters,
    )
    triage = Triage(broker, dead, RuleSet.load())
    router = KafkaRouter()
    batch_subscriber(
        router,
        CASES_OPENED.name,
        service="triage",
        settings=settings,
        process=triage.process,
        description="Categorises harm and urgency, normalises URLs, identifies platforms.",
    )
    broker.include_router(router)

    async def within_dead_letter_limit() -> bool:
        return not dead.tripped

    return build_app(
        broker,
        service="triage",
        routes=[observed.route()],
        checks={"dead_letters": within_dead_letter_limit},
    )
