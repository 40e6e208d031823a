"""Escalator's work on a batch of triaged cases and practitioners' commands.

Promises: each triaged URL is linked once to the escalation of its content (see
:mod:`helpline_escalator.links`): a new escalation is queued for its platform's worker or
marked `needs_manual` (hotline route, unknown host, no adapter), and every outcome event
this causes (a new manual escalation, states already reached by a shared one) is queued
in the same transaction. While tracing, each case's links keep the trace context of its
record's processing, which the case's later outcomes continue. Offsets are committed by
the caller after that transaction commits: at least once, no duplicate escalation, no
notice sent twice for one content.

A re-triaged case (revision > 1) first moves its URLs whose route changed off their old
escalations (see :mod:`helpline_escalator.retriage`), then links them like any case.
Practitioners' commands (`helpline.practitioner.commands`, same batch) are applied in the
same transaction (see :mod:`helpline_escalator.commands`). Records that are not a valid
event of their topic go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from helpline_escalator.commands import Commands
from helpline_escalator.commands import parse as parse_commands
from helpline_escalator.dispatcher import Dispatcher
from helpline_escalator.links import link_cases
from helpline_escalator.retriage import retriage
from helpline_shared import tracing
from helpline_shared.consumer import DeadLetters, Record, describe
from helpline_shared.db import Database
from helpline_shared.events import CaseTriagedV1, TriagedUrl
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.outbox import Outbox
from helpline_shared.topics import PRACTITIONER_COMMANDS

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
        commands: Commands | None = None,
        on_withdrawal: Callable[[], None] | None = None,
    ) -> None:
        self._commands = commands
        self._on_withdrawal = on_withdrawal
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

    def _traceparent(self, record: Record) -> str | None:
        """The W3C traceparent of `record`'s processing; None when not tracing."""
        if record.key is None or tracing.of(self._broker) is None:
            return None
        return tracing.stamped(self._broker, {}, record.key).get("traceparent")

    async def process(self, records: Sequence[Record]) -> None:
        cases: list[CaseTriagedV1] = []
        refused: list[tuple[Record, str]] = []
        traceparents: dict[uuid.UUID, str] = {}
        command_records = [r for r in records if r.topic == PRACTITIONER_COMMANDS.name]
        commands, refused = parse_commands(command_records)
        for record in records:
            if record.topic == PRACTITIONER_COMMANDS.name:
                continue
            try:
                case = CaseTriagedV1.model_validate_json(record.value or b"")
            except ValidationError as exc:
                refused.append((record, f"invalid case.triaged: {describe(exc)}"))
                continue
            cases.append(case.model_copy(update={"urls": [self._routable(u) for u in case.urls]}))
            if (traceparent := self._traceparent(record)) is not None:
                traceparents.setdefault(case.case_id, traceparent)
        self._dead.admit(records, [r for r, _ in refused])

        # A case's decisions in one batch: only the newest counts (an older one linked
        # beside it would race it for the URL's one current link).
        newest: dict[uuid.UUID, CaseTriagedV1] = {}
        for case in cases:
            if case.case_id not in newest or case.revision >= newest[case.case_id].revision:
                newest[case.case_id] = case
        cases = [c for c in cases if newest[c.case_id] is c]
        woken: set[str] = set()
        async with self._db.pool.acquire() as conn, conn.transaction():
            moved = await retriage(conn, [c for c in cases if c.revision > 1])
            linked = await link_cases(conn, cases, traceparents)
            outcomes = moved.outcomes + linked.outcomes
            if self._commands is not None and commands:
                applied, woken = await self._commands.apply_all(conn, commands)
                outcomes += applied
            await self._outbox.add(conn, outcomes)
        for row in linked.opened:
            if row["state"] == "needs_manual":
                with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
                    log.info("escalation needs manual handling", reason=row["reason"])
        for record, error in refused:
            self._dead.add(record, error)
        self._dispatcher.wake(linked.platforms | woken, hotline=linked.hotline)
        if moved.withdrawals and self._on_withdrawal is not None:
            self._on_withdrawal()
        if outcomes:
            self._outbox.wake()
