"""Builds the escalator service from settings."""

from __future__ import annotations

import aiohttp
from faststream.asgi import AsgiFastStream
from faststream.kafka import KafkaRouter

from helpline_escalator.adapters.registry import ADAPTERS, build_adapters
from helpline_escalator.dispatcher import Dispatcher, PlatformWorker
from helpline_escalator.usecase import Escalator
from helpline_shared.consumer import DeadLetters, batch_subscriber
from helpline_shared.db import Database
from helpline_shared.kafka import build_broker, document_publishers
from helpline_shared.observability import ServiceMetrics
from helpline_shared.outbox import Outbox
from helpline_shared.service import build_app
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_TRIAGED, DEAD_LETTERS, ESCALATION_OUTCOMES


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run the escalator")
    observed = ServiceMetrics("escalator")
    broker = build_broker(settings, "escalator", [observed.middleware()])
    document_publishers(broker, ESCALATION_OUTCOMES, DEAD_LETTERS["escalator"])
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    outbox = Outbox(db, broker, "escalator")
    dispatcher = Dispatcher({})
    dead = DeadLetters(
        "escalator",
        max_ratio=settings.dlq_max_ratio,
        window=settings.dlq_window,
        counter=observed.dead_letters,
    )
    escalator = Escalator(db, broker, outbox, dispatcher, dead, platforms=frozenset(ADAPTERS))
    router = KafkaRouter()
    batch_subscriber(
        router,
        CASES_TRIAGED.name,
        service="escalator",
        settings=settings,
        process=escalator.process,
        description="Opens one escalation per triaged URL and hands it to its platform worker.",
    )
    broker.include_router(router)
    # One HTTP connection pool per platform, so a slow platform cannot exhaust another's.
    # aiohttp sessions must be created inside the running loop: in the startup hook.
    clients: dict[str, aiohttp.ClientSession] = {}

    def client_for(slug: str) -> aiohttp.ClientSession:
        clients[slug] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=settings.platform_timeout_s),
            connector=aiohttp.TCPConnector(limit=settings.platform_concurrency),
            cookie_jar=aiohttp.DummyCookieJar(),  # notices are stateless: no cookies to keep
        )
        return clients[slug]

    async def start_workers() -> None:
        await db.open()
        adapters = build_adapters(client_for, settings.platform_base_url)
        dispatcher.workers.update(
            {slug: PlatformWorker(a, db, outbox, settings) for slug, a in adapters.items()}
        )
        dispatcher.start()

    async def stop_workers() -> None:
        # Budget: workers 5 s, the outbox 2 + 3 s, then the subscriber drains within the
        # graceful timeout (15 s): inside Kubernetes' 30 s termination grace period.
        await dispatcher.stop(min(5.0, settings.graceful_timeout_s / 3))
        await outbox.stop(3.0)

    async def close() -> None:
        for client in clients.values():
            await client.close()
        await db.close()

    async def within_dead_letter_limit() -> bool:
        return not dead.tripped

    async def start_relay() -> None:
        outbox.start()

    return build_app(
        broker,
        service="escalator",
        routes=[observed.route()],
        checks={"database": db.ready, "dead_letters": within_dead_letter_limit},
        on_startup=[start_workers],
        after_startup=[start_relay],
        on_shutdown=[stop_workers],
        after_shutdown=[close],
    )
