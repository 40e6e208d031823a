"""Triage of opened cases into triaged cases, each decision kept and explained.

Delivery: at least once, one decision per case. A batch's new decisions and the content
their cases reported are stored in one transaction; then the stored event of every case in
the batch is published; the batch's offsets are committed after every triaged event and
dead letter was acknowledged by the broker (dead letters are published by the runner after
the triaged events, once per source position). A redelivered `helpline.cases.opened`, or
one whose decision was stored but not published when the process died, finds its stored
decision and republishes it byte for byte (same event id and `triaged_at`), even if the
rules changed since; consumers drop the duplicate by event id.

Content reported by several cases: a case's `prior_reports` fact is the largest number of
other cases, decided before it (earlier in the same batch included), that reported one of
its URLs' content.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from helpline_shared import cloudevents
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.db import Database
from helpline_shared.events import CaseOpenedV1, CaseTriagedV1, utcnow
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.topics import CASES_TRIAGED
from helpline_triage import repository
from helpline_triage.decision import decide, read_urls
from helpline_triage.rules import RuleSet

SOURCE = "urn:helpline:triage"
log = get_logger("helpline.triage")


def triaged_message(text: str) -> OutgoingMessage:
    """The Kafka message of a stored decision: its exact text, CloudEvents headers from it."""
    event = CaseTriagedV1.model_validate_json(text)
    message = cloudevents.event_message(
        CASES_TRIAGED.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_="helpline.case.triaged.v1",
        source=SOURCE,
        time=event.triaged_at,
        subject=event.case_id,
    )
    return OutgoingMessage(message.topic, text.encode(), message.key, message.headers)


class Triage:
    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        dead_letters: DeadLetters,
        rules: RuleSet,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._broker = broker
        self._dead = dead_letters
        self.rules = rules  # replaceable: stored decisions are republished whatever it says
        self._clock = clock

    async def process(self, records: Sequence[Record]) -> None:
        """Decides every valid case not yet decided, stores, then publishes the stored event
        of every valid case; marks the others dead (the runner publishes them after this
        returns)."""
        cases: list[CaseOpenedV1] = []
        refused: list[tuple[Record, str]] = []
        for record in records:
            try:
                cases.append(CaseOpenedV1.model_validate_json(record.value or b""))
            except ValidationError as exc:
                refused.append((record, f"invalid case.opened: {describe(exc)}"))
        self._dead.admit(records, [r for r, _ in refused])
        ids = list(dict.fromkeys(c.case_id for c in cases))
        async with self._db.pool.acquire() as conn, conn.transaction():
            stored = await repository.stored_events(conn, ids)
            new: dict[uuid.UUID, CaseOpenedV1] = {}
            for case in cases:  # a case twice in a batch: its first delivery is decided
                if case.case_id not in stored:
                    new.setdefault(case.case_id, case)
            read = {case_id: read_urls(case) for case_id, case in new.items()}
            contents = {
                case_id: [u.content for u in urls if u.content] for case_id, urls in read.items()
            }
            counts = Counter(
                await repository.report_counts(conn, (k for ks in contents.values() for k in ks))
            )
            decisions: list[repository.Decision] = []
            for case_id, case in new.items():
                mine = list(dict.fromkeys(contents[case_id]))
                prior = max((counts[k] for k in mine), default=0)
                counts.update(mine)
                event = decide(self.rules, case, read[case_id], prior, self._clock())
                # A real case's event is as before `period_at` existed (consumers not yet
                # released with it refuse unknown fields); only a simulated case has it.
                text = event.model_dump_json(
                    exclude={"period_at"} if event.period_at is None else None
                )
                decisions.append(repository.Decision(event, text, prior, mine))
                with bind_event(case_id=case_id, event_id=event.event_id):
                    log.debug("case triaged", urgency=event.urgency, route=event.route, prior=prior)
            await repository.save(conn, decisions)
            if decisions:  # a concurrent consumer may have decided one first: its event wins
                stored = await repository.stored_events(conn, ids)
        await publish_all(self._broker, [triaged_message(stored[i]) for i in ids])
        for record, error in refused:
            self._dead.add(record, error)
