"""Builds the notify service from settings: the consumer of the case, reporter, triage and
outcome topics (see :mod:`helpline_notify.usecase`), the mail sender
(:mod:`helpline_notify.mail`), the alert webhook sender (:mod:`helpline_notify.webhooks`),
the HTTP API with the reporters' status pages (:mod:`helpline_notify.status_page`), health
probes and `/metrics`. Notify publishes nothing but its dead letters."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_notify.mail import Sender, oldest_due_seconds
from helpline_notify.status_page import build_router
from helpline_notify.usecase import TOPICS, Notify, redact
from helpline_notify.webhooks import WebhookSender
from helpline_shared.db import Database
from helpline_shared.settings import Settings
from helpline_shared.webapi import Access, new_api
from helpline_shared.wiring import ServiceWiring


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run notify")
    wiring = ServiceWiring(settings, "notify", publishes=[], redact=redact)
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    sender = Sender(db, settings)
    wiring.observed.outbox_backlog(lambda: oldest_due_seconds(db))
    webhooks = WebhookSender(db, settings)

    def wake() -> None:
        sender.wake()
        webhooks.wake()

    wiring.consume(
        *TOPICS,
        process=Notify(db, wiring.dead_letters, settings, wake).process,
        description="Keeps what notify needs of each case (source, reporter's email, URLs and "
        "their states) and queues the receipt, the outcome email and the alerts they make due.",
        depends_on=[db.ready],
        background=True,
    )
    access = Access(db, settings)  # one per process: its rate limits count every route
    api = new_api(
        "helpline notify",
        "Reporters' status pages (a private link per case) and notify's practitioner routes.",
    )
    api.include_router(build_router(db, access, settings))

    async def start_senders() -> None:
        sender.start()
        webhooks.start()

    async def stop_senders() -> None:
        """Lets the emails and webhooks in hand finish (bounded); one claimed and not
        recorded is sent again after its lease (same Message-ID / event id)."""
        await sender.stop(5.0)
        await webhooks.stop(5.0)

    return wiring.app(
        api=api,
        checks={"database": db.ready},
        on_startup=[db.open],
        after_startup=[start_senders],
        on_shutdown=[stop_senders],
        after_shutdown=[db.close],
    )
