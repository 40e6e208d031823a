"""Metrics' work on a batch of events from every topic it follows.

At least once in, exactly once counted: see :mod:`helpline_metrics.projection`. Only events
from the producer the topic registry names are counted: see :mod:`helpline_metrics.provenance`.
"""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ValidationError

from helpline_metrics import projection, provenance
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.db import Database
from helpline_shared.events import CaseTriagedV1, EscalationOutcomeV1
from helpline_shared.topics import CASES_TRIAGED, ESCALATION_OUTCOMES, REPORTS_REJECTED

MODELS: dict[str, type[BaseModel]] = {
    t.name: t.model for t in (CASES_TRIAGED, ESCALATION_OUTCOMES, REPORTS_REJECTED) if t.model
}
TOPICS = tuple(MODELS)


class Metrics:
    def __init__(self, db: Database, broker: KafkaBroker, dead_letters: DeadLetters) -> None:
        self._db = db
        self._broker = broker
        self._dead = dead_letters

    async def process(self, records: Sequence[Record]) -> None:
        """Folds every valid event from its registered producer into the totals in one
        transaction; marks the others dead with the reason (published by the runner after
        the transaction committed)."""
        events, refused = admit(records)
        self._dead.admit(records, [r for r, _ in refused])
        async with self._db.pool.acquire() as conn, conn.transaction():
            await projection.apply(conn, events)
        for record, error in refused:
            self._dead.add(record, error)


def admit(
    records: Sequence[Record],
) -> tuple[list[projection.Event], list[tuple[Record, str]]]:
    """The events metrics counts from `records`, and the records it refuses with why:
    invalid, or not from the topic's registered producer. `helpline metrics rebuild`
    admits exactly what the running service admits."""
    events: list[projection.Event] = []
    refused: list[tuple[Record, str]] = []
    for record in records:
        try:
            event = MODELS[record.topic].model_validate_json(record.value or b"")
        except ValidationError as exc:
            refused.append((record, f"invalid {record.topic}: {describe(exc)}"))
            continue
        forged = provenance.refusal(record, _platforms(event))
        if forged is not None:
            refused.append((record, forged))
            continue
        events.append(event)  # type: ignore[arg-type]
    return events, refused


def _platforms(event: BaseModel) -> list[str]:
    """The platforms an event would add to the totals."""
    if isinstance(event, EscalationOutcomeV1):
        return [event.platform]
    if isinstance(event, CaseTriagedV1):
        return [u.platform for u in event.urls]
    return []
