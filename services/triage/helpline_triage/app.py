"""Builds the triage service from settings. Triage keeps no state of its own."""

from __future__ import annotations

from faststream.asgi import AsgiFastStream

from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, CASES_TRIAGED
from helpline_shared.wiring import ServiceWiring
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage


def create_app(settings: Settings) -> AsgiFastStream:
    wiring = ServiceWiring(settings, "triage", publishes=[CASES_TRIAGED])
    triage = Triage(wiring.broker, wiring.dead_letters, RuleSet.load())
    wiring.consume(
        CASES_OPENED.name,
        process=triage.process,
        description="Categorises harm and urgency, normalises URLs, identifies platforms.",
    )
    return wiring.app()
