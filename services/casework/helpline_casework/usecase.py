"""Casework's work on a batch of events from every topic it follows.

Why a service of its own: practitioners need each case whole (report, triage decisions,
every URL's escalation with its attempts and their own actions), and no existing service
holds all of it, nor may one service read another's tables. Casework builds that read model
from the events alone (`helpline.cases.opened`, `.cases.triaged`, `.escalations.outcomes`,
`.escalations.activity`, `.cases.reporters`), serves it over HTTP, and turns practitioners'
actions into commands on `helpline.practitioner.commands` for the escalator and triage
(see :mod:`helpline_casework.actions`), which stay the only writers of their own state.

Delivery, per message: at least once in, applied exactly once (an inbox of event ids; see
:mod:`helpline_casework.projection`), in any order between topics. A message that is not a
valid event of its topic goes to `helpline.casework.dlq` with the reason (its value with the
reporter's details redacted: :func:`redact`) and is not applied; the rest of its batch is.
Personal data (a reporter's name, email and role) is stored only in `casework.reporters` and
never logged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from helpline_casework import projection
from helpline_shared.consumer import DeadLetters, Record, admit_by_topic
from helpline_shared.db import Database
from helpline_shared.logging import get_logger
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
)

MODELS: dict[str, type[BaseModel]] = {
    t.name: t.model
    for t in (CASES_OPENED, CASES_TRIAGED, ESCALATION_OUTCOMES, ESCALATION_ACTIVITY, CASE_REPORTERS)
    if t.model
}
TOPICS = tuple(MODELS)
REDACTED = "[redacted]"


class Casework:
    """Applies consumed events to the read model (see module doc for the promise)."""

    def __init__(self, db: Database, dead_letters: DeadLetters) -> None:
        self._db = db
        self._dead = dead_letters
        self._log = get_logger("helpline.casework")

    async def process(self, records: Sequence[Record]) -> None:
        """Applies every valid event in one transaction; marks the others dead with the
        reason (published by the runner after the transaction committed)."""
        events, refused = admit(records)
        self._dead.admit(records, [r for r, _ in refused])
        async with self._db.pool.acquire() as conn, conn.transaction():
            applied = await projection.apply(conn, events)
        for record, error in refused:
            self._log.warning(
                "event refused", topic=record.topic, offset=record.offset, error=error[:300]
            )
            self._dead.add(record, error)
        if applied:
            self._log.debug("events applied", applied=len(applied), received=len(records))


def admit(records: Sequence[Record]) -> tuple[list[projection.Event], list[tuple[Record, str]]]:
    """The valid events of `records`, and the records refused with why (never the values)."""
    events, refused = admit_by_topic(records, MODELS, "casework")
    return events, refused  # type: ignore[return-value]  # MODELS' models are the Event union


def redact(raw: bytes) -> bytes:
    """A dead letter's value without personal data: the JSON with its `reporter` member
    replaced by "[redacted]"; empty (withheld) when it does not parse as a JSON object,
    since then nothing tells the reporter's details apart from the rest."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, RecursionError, UnicodeError):
        return b""
    if not isinstance(data, dict):
        return b""
    if "reporter" in data:
        data["reporter"] = REDACTED
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
