"""Builds the intake service from settings."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_intake.form import build_form_routes
from helpline_intake.http import build_api
from helpline_intake.redaction import redact_dead_letter
from helpline_intake.usecase import Intake
from helpline_shared.db import Database
from helpline_shared.events import ReportSubmittedV1, ReportSubmittedV2
from helpline_shared.outbox_backlog import backlog_reader
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    REPORTS_REJECTED,
    REPORTS_SUBMITTED,
)
from helpline_shared.webapi import Access
from helpline_shared.wiring import ServiceWiring


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run intake")
    wiring = ServiceWiring(
        settings,
        "intake",
        publishes=[REPORTS_REJECTED, CASES_OPENED, CASE_REPORTERS],
        redact=redact_dead_letter,  # reporters' personal data stays off the dead-letter topic
    )
    # The HTTP API and the form publish reports for the consumer: either version, as others may.
    wiring.broker.publisher(
        REPORTS_SUBMITTED.name,
        schema=ReportSubmittedV1 | ReportSubmittedV2,
        title=f"{REPORTS_SUBMITTED.name}:publish",
        description="Reports taken by the HTTP API and the form. Version 1 or 2 "
        "(`schema_version`); intake reads both side by side.",
    )
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    intake = Intake(
        db,
        wiring.broker,
        wiring.dead_letters,
        allow_simulated=settings.allow_simulated_reports,
    )
    # Reporter details (and their erasures) wait on intake's outbox: each batch drains what it
    # queued, and the relay publishes what anything else left there (an erasure made while
    # the broker was away), so nothing waits for the next report.
    wiring.observed.outbox_backlog(backlog_reader(db, "intake"))
    wiring.consume(
        REPORTS_SUBMITTED.name,
        process=intake.process,
        description="Validates, deduplicates and stores reports; opens cases or rejects them.",
        depends_on=[db.ready],
    )

    async def start_relay() -> None:
        intake.outbox.start()

    async def stop_relay() -> None:
        await intake.outbox.stop(5.0)

    return wiring.app(
        routes=build_form_routes(wiring.broker, db, settings),
        api=build_api(wiring.broker, db, Access(db, settings)),
        checks={"database": db.ready},
        on_startup=[db.open],
        after_startup=[start_relay],
        on_shutdown=[stop_relay],
        after_shutdown=[db.close],
    )
