"""Builds the triage service from settings. Triage keeps its decisions in schema `triage`."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_shared.db import Database
from helpline_shared.logging import get_logger
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, CASES_TRIAGED, PRACTITIONER_COMMANDS
from helpline_shared.wiring import ServiceWiring
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage

log = get_logger("helpline.triage")


def create_app(settings: Settings) -> AsgiFastStream:
    if not settings.database_url:
        raise ValueError("HELPLINE_DATABASE_URL is required to run triage")
    wiring = ServiceWiring(settings, "triage", publishes=[CASES_TRIAGED])
    db = Database(settings.database_url, max_size=settings.database_pool_max)
    triage = Triage(db, wiring.broker, wiring.dead_letters, RuleSet.load(), settings=settings)

    async def announce_deadlines() -> None:
        for line in triage.deadlines.describe():
            log.info("decision deadline", deadline=line)

    wiring.consume(
        CASES_OPENED.name,
        PRACTITIONER_COMMANDS.name,
        process=triage.process,
        description="Categorises harm and urgency, understands URLs, keeps each decision; "
        "applies practitioners' re-triage overrides as superseding decisions.",
        depends_on=[db.ready],
    )
    return wiring.app(
        checks={"database": db.ready},
        on_startup=[db.open, announce_deadlines],
        after_shutdown=[db.close],
    )
