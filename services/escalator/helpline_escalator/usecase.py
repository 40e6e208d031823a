"""Escalator's work on a batch of triaged cases.

Promises: each triaged URL gets exactly one escalation row (idempotent on its id), queued
for its platform's worker, or marked `needs_manual` (hotline route, unknown host, no
adapter) with an outcome event queued in the same transaction. Offsets are committed by
the caller after that transaction commits: at least once, no duplicate escalation.
"""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from helpline_escalator.dispatcher import Dispatcher
from helpline_escalator.outcomes import outcome_message
from helpline_escalator.repository import insert_escalations
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.db import Database
from helpline_shared.events import CaseTriagedV1, TriagedUrl
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.outbox import Outbox

log = get_logger("helpline.escalator")


class Escalator:
    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        outbox: Outbox,
        dispatcher: Dispatcher,
        dead_letters: DeadLetters,
        *,
        platforms: frozenset[str],
    ) -> None:
        self._db = db
        self._broker = broker
        self._outbox = outbox
        self._dispatcher = dispatcher
        self._dead = dead_letters
        self._platforms = platforms

    def _routable(self, url: TriagedUrl) -> TriagedUrl:
        if url.route == "platform" and url.platform not in self._platforms:
            return url.model_copy(update={"route": "manual"})
        return url

    async def process(self, records: Sequence[Record]) -> None:
        cases: list[CaseTriagedV1] = []
        refused: list[tuple[Record, str]] = []
        for record in records:
            try:
                case = CaseTriagedV1.model_validate_json(record.value or b"")
            except ValidationError as exc:
                refused.append((record, f"invalid case.triaged: {describe(exc)}"))
                continue
            cases.append(case.model_copy(update={"urls": [self._routable(u) for u in case.urls]}))
        self._dead.admit(records, [r for r, _ in refused])

        platforms: set[str] = set()
        async with self._db.pool.acquire() as conn, conn.transaction():
            outcomes: list[OutgoingMessage] = []
            for row in await insert_escalations(conn, cases):
                if row["state"] != "needs_manual":
                    platforms.add(row["platform"])
                    continue
                with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
                    log.info("escalation needs manual handling", reason=row["reason"])
                outcomes.append(
                    outcome_message(row, state="needs_manual", attempts=0, reason=row["reason"])
                )
            await self._outbox.add(conn, outcomes)
        for record, error in refused:
            self._dead.add(record, error)
        self._dispatcher.wake(platforms)
        if outcomes:
            self._outbox.wake()
