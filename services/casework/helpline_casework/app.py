"""Builds the casework service from settings: the read model's consumer, the outbox relay of
practitioners' commands, the HTTP API and pages, health probes and `/metrics`."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_casework.actions import Actions
from helpline_casework.http import build_api
from helpline_casework.pages import build_pages
from helpline_casework.usecase import TOPICS, Casework, redact
from helpline_shared.db import Database
from helpline_shared.outbox import Outbox
from helpline_shared.outbox_backlog import backlog_reader
from helpline_shared.settings import Settings
from helpline_shared.topics import PRACTITIONER_COMMANDS
from helpline_shared.webapi import Access
from helpline_shared.websession import Sessions
from helpline_shared.wiring import ServiceWiring


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run casework")
    wiring = ServiceWiring(settings, "casework", publishes=[PRACTITIONER_COMMANDS], redact=redact)
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    outbox = Outbox(db, wiring.broker, "casework")
    wiring.observed.outbox_backlog(backlog_reader(db, "casework"))
    wiring.consume(
        *TOPICS,
        process=Casework(db, wiring.dead_letters).process,
        description="Builds each case's read model: the report, every triage decision, each "
        "URL's escalation with its states, attempts and practitioners' actions, the reporter.",
        depends_on=[db.ready],
        background=True,
    )
    actions = Actions(db, outbox)
    access = Access(db, settings)  # one per process: its rate limits count API and pages
    api = build_api(db, access, actions)
    api.include_router(build_pages(db, access, Sessions(settings), actions, settings))

    async def start_relay() -> None:
        outbox.start()

    async def stop_relay() -> None:
        """Publishes every command already accepted (bounded), after the consumer stopped;
        one accepted later is relayed at the next start."""
        await outbox.stop(5.0)

    return wiring.app(
        api=api,
        checks={"database": db.ready},
        on_startup=[db.open],
        after_startup=[start_relay],
        on_shutdown=[stop_relay],
        after_shutdown=[db.close],
    )
