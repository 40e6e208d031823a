"""Builds the escalator service from settings."""

from __future__ import annotations

import asyncio
from typing import Protocol

import aiohttp
from faststream.asgi import AsgiFastStream

from helpline_escalator.adapters.hotline import HotlineAdapter, hotline_settings
from helpline_escalator.adapters.registry import ADAPTERS, build_adapters
from helpline_escalator.appeals import deadline_and_appeal_loops
from helpline_escalator.breaker import BreakerPolicy
from helpline_escalator.circuits import open_circuits, register_circuits
from helpline_escalator.commands import Commands
from helpline_escalator.dispatcher import Dispatcher, HotlineWorker, PlatformWorker
from helpline_escalator.platform_settings import PlatformSettings, load_platform_settings
from helpline_escalator.retriage import Withdrawals
from helpline_escalator.usecase import Escalator
from helpline_shared.db import Database
from helpline_shared.logging import get_logger
from helpline_shared.outbox import Outbox
from helpline_shared.outbox_backlog import backlog_reader
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASES_TRIAGED,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
    PRACTITIONER_COMMANDS,
)
from helpline_shared.wiring import ServiceWiring

log = get_logger("helpline.escalator")


KEEPALIVE_S = 4.0


def wake_all(loops: list[Withdrawals]) -> None:
    for loop in loops:
        loop.wake()


class Loop(Protocol):
    """A background loop the escalator starts with its workers and stops with them."""

    def start(self) -> None: ...

    async def stop(self, timeout_s: float) -> None: ...


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run the escalator")
    # Each platform's own settings, refused here (at start-up) when invalid.
    platforms = load_platform_settings(settings)
    if dev := sorted(slug for slug, p in platforms.items() if p.dev_credentials):
        log.warning("platforms use development credentials (simulator endpoint)", platforms=dev)
    # The national hotline likewise: refused here when it has no credentials for a real one.
    hotline = hotline_settings(settings)
    wiring = ServiceWiring(
        settings, "escalator", publishes=[ESCALATION_OUTCOMES, ESCALATION_ACTIVITY]
    )
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    outbox = Outbox(db, wiring.broker, "escalator")
    wiring.observed.outbox_backlog(backlog_reader(db, "escalator"))
    dispatcher = Dispatcher({})
    register_circuits(wiring.observed.registry, dispatcher)
    # Background loops started after the workers and stopped with them (each has
    # `start()` and `async stop(timeout_s)`); add a loop by appending it in start_workers.
    loops: list[Loop] = []
    withdrawals: list[Withdrawals] = []
    commands = Commands(
        polled=lambda slug: slug in ADAPTERS and platforms[slug].status_lookup,
        status_interval_s=settings.escalation_status_interval_s,
    )
    escalator = Escalator(
        db,
        wiring.broker,
        outbox,
        dispatcher,
        wiring.dead_letters,
        platforms=frozenset(ADAPTERS),
        commands=commands,
        on_withdrawal=lambda: wake_all(withdrawals),
    )
    wiring.consume(
        CASES_TRIAGED.name,
        PRACTITIONER_COMMANDS.name,
        process=escalator.process,
        description="Links each triaged URL to its content's escalation (one per content "
        "and route) and hands new ones to their platform worker or the hotline; moves "
        "re-triaged URLs; applies practitioners' actions on escalations.",
        depends_on=[db.ready],
    )
    # One HTTP connection pool per platform, so a slow platform cannot exhaust another's.
    # aiohttp sessions must be created inside the running loop: in the startup hook.
    clients: dict[str, aiohttp.ClientSession] = {}

    def client_for(
        slug: str, timeout_s: float | None = None, concurrency: int | None = None
    ) -> aiohttp.ClientSession:
        clients[slug] = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s or platforms[slug].timeout_s),
            # Idle connections are dropped before a server would (uvicorn after 5 s): one it
            # had closed fails the next burst of calls with a reset, each then looked up.
            connector=aiohttp.TCPConnector(
                limit=concurrency or platforms[slug].concurrency, keepalive_timeout=KEEPALIVE_S
            ),
            cookie_jar=aiohttp.DummyCookieJar(),  # notices are stateless: no cookies to keep
        )
        return clients[slug]

    async def start_workers() -> None:
        await db.open()
        adapters = build_adapters(client_for, platforms)
        dispatcher.workers.update(
            {
                slug: PlatformWorker(
                    a,
                    db,
                    outbox,
                    worker_settings(settings, platforms[slug]),
                    BreakerPolicy(
                        failures=platforms[slug].breaker_failures,
                        open_s=platforms[slug].breaker_open_s,
                    ),
                )
                for slug, a in adapters.items()
            }
        )
        dispatcher.hotline = HotlineWorker(
            HotlineAdapter(client_for("hotline", hotline.timeout_s, 4), hotline),
            db,
            outbox,
            settings,
        )
        withdrawals.append(
            Withdrawals(
                db,
                outbox,
                lambda row: dispatcher.adapter_for(row["platform"], row["route"]),
                lease_s=settings.escalation_claim_lease_s,
                retry_s=settings.escalation_retry_base_s,
                call_timeout_s=settings.platform_timeout_s + 1.0,
                idle_s=settings.escalation_poll_interval_s,
            )
        )
        loops.extend(withdrawals)
        loops.extend(deadline_and_appeal_loops(db, outbox, settings, dispatcher))
        dispatcher.start()
        for loop in loops:
            loop.start()

    async def stop_workers() -> None:
        """A graceful stop publishes every outcome already committed: first everything that
        writes outcomes stops (the subscriber finishes its batch in hand, the workers their
        steps), then the outbox is drained. Budget: the subscriber's graceful timeout (15 s)
        alongside the workers' 5 s, then the outbox 5 s: inside Kubernetes' 30 s grace."""
        await asyncio.gather(
            *(subscriber.stop() for subscriber in wiring.broker.subscribers),
            dispatcher.stop(min(5.0, settings.graceful_timeout_s / 3)),
            *(loop.stop(min(5.0, settings.graceful_timeout_s / 3)) for loop in loops),
        )
        await outbox.stop(5.0)

    async def close() -> None:
        for client in clients.values():
            await client.close()
        await db.close()

    async def start_relay() -> None:
        outbox.start()

    return wiring.app(
        checks={"database": db.ready},
        details={"open_circuits": lambda: open_circuits(dispatcher)},
        on_startup=[start_workers],
        after_startup=[start_relay],
        on_shutdown=[stop_workers],
        after_shutdown=[close],
    )


def worker_settings(settings: Settings, platform: PlatformSettings) -> Settings:
    """The settings a platform's worker runs with: the global ones, with this platform's
    own rate limit, concurrency, timeout and settle period in place of the global ones."""
    return settings.model_copy(
        update={
            "platform_rate_per_s": platform.rate_per_s,
            "platform_concurrency": platform.concurrency,
            "platform_timeout_s": platform.timeout_s,
            "platform_settle_s": platform.settle_s,
        }
    )
