"""Intake's Kafka subscriber on `helpline.reports.submitted`."""

from __future__ import annotations

from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaRouter

from helpline_intake.usecase import Intake
from helpline_shared.consumer import Backoff, raw_records
from helpline_shared.settings import Settings
from helpline_shared.topics import REPORTS_SUBMITTED

GROUP_ID = "helpline-intake"


def build_router(settings: Settings, intake: Intake) -> KafkaRouter:
    router = KafkaRouter()
    backoff = Backoff("intake")

    @router.subscriber(
        REPORTS_SUBMITTED.name,
        group_id=GROUP_ID,
        batch=True,
        max_records=settings.kafka_batch_max_records,
        batch_timeout_ms=settings.kafka_batch_timeout_ms,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=raw_records,
        title="intake.reports.submitted",
        description="Validates, deduplicates and stores reports; opens cases or rejects.",
    )
    async def on_reports(records: Any) -> None:
        try:
            await intake.process(records)
        except Exception as exc:
            await backoff.failed(exc)
            raise
        backoff.succeeded()

    return router
