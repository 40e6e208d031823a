"""Intake's Kafka subscriber on `helpline.reports.submitted`."""

from __future__ import annotations

from faststream.kafka import KafkaRouter

from helpline_intake.usecase import Intake
from helpline_shared.consumer import batch_subscriber
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED


def build_router(settings: Settings, intake: Intake) -> KafkaRouter:
    router = KafkaRouter()
    batch_subscriber(
        router,
        REPORTS_SUBMITTED.name,
        service="intake",
        settings=settings,
        process=intake.process,
        description="Validates, deduplicates and stores reports; opens cases or rejects them.",
    )
    return router
