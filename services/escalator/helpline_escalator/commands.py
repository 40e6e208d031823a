"""Practitioners' actions on escalations, from `helpline.practitioner.commands`.

Promises:
- Once per command: each command's id is recorded in `escalator.applied_commands` in the
  transaction that applies (or refuses) it, with its outcome and activity events on the
  outbox; a redelivered command changes nothing and publishes nothing again.
- An action is applied only where it makes sense, else refused with the reason (no state
  change; an activity event kind `practitioner`, result `refused`, the reason in
  `error`): `escalated_by_hand` on an escalation waiting for a person or failed;
  `platform_decision` and `advice_only` on any open one; `appeal` on one decided
  `no_violation` and not appealed yet; never on an unknown escalation or one the
  command's case is not linked to.
- `platform_decision` on an `appealed` escalation is the appeal's answer, as the platform
  gave it to a person (an appeal made by hand, or one the platform answered by email):
  `appeal_decided` with the decision and whether it overturned the one contested, and the
  appeal loop asks the platform nothing more.
- Every action applied is an activity event (actor, action, note, command id, result ok)
  and, except `appeal` (the appeal loop announces `appealed`), an outcome event for every
  case linked to the escalation, with the practitioner's key id and note.
- An action that closes an escalation (decided, closed) ends its polling and any claim
  in hand: a platform call finishing later records its result on its attempt only.
- `escalated_by_hand`: submitted with the platform's reference; the platform's worker
  then chases the decision if the platform has an automated status API, else the
  escalation waits for a practitioner to record the decision.
- `retriage` commands are triage's: ignored here.
Invalid commands go to the dead-letter topic with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from helpline_escalator.activity import practitioner_message
from helpline_escalator.outcomes import Reached, announce, reached_before
from helpline_shared.consumer import Record, describe
from helpline_shared.db import Conn
from helpline_shared.events import CLOSING_STATES, PractitionerCommandV1, utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger

log = get_logger("helpline.escalator.commands")

# When an escalation is never due for a call: it waits for a person.
NEVER = datetime(9999, 1, 1, tzinfo=UTC)
# Row states in which no platform decision has been recorded and nothing closed it.
CLOSED_ROW_STATES = frozenset(CLOSING_STATES | {"appealed", "appeal_decided"})
BY_HAND_FROM = frozenset({"needs_manual", "failed"})


class RefusedError(Exception):
    """The command cannot be applied: the reason, for the practitioner."""


def parse(
    records: Sequence[Record],
) -> tuple[list[PractitionerCommandV1], list[tuple[Record, str]]]:
    """The valid commands, and the refused records with the reason (for dead letters)."""
    commands: list[PractitionerCommandV1] = []
    refused: list[tuple[Record, str]] = []
    for record in records:
        try:
            commands.append(PractitionerCommandV1.model_validate_json(record.value or b""))
        except ValidationError as exc:
            refused.append((record, f"invalid practitioner command: {describe(exc)}"))
    return commands, refused


class Commands:
    """Applies practitioners' commands in the caller's transaction.

    `polled(platform)`: whether the escalator chases that platform's decisions itself (it
    has a worker and an automated status API); `status_interval_s`: when the first status
    check of an escalation submitted by hand is due."""

    def __init__(self, *, polled: Callable[[str], bool], status_interval_s: float) -> None:
        self._polled = polled
        self._status_interval_s = status_interval_s

    async def apply_all(
        self, conn: Conn, commands: Sequence[PractitionerCommandV1]
    ) -> tuple[list[OutgoingMessage], set[str]]:
        """Apply `commands` in order; returns the events to queue and the platforms
        whose workers have new work."""
        messages: list[OutgoingMessage] = []
        woken: set[str] = set()
        for command in commands:
            if command.action == "retriage":
                continue  # triage's
            with bind_event(case_id=command.case_id, event_id=command.command_id):
                out, platform = await self.apply(conn, command)
            messages += out
            if platform is not None:
                woken.add(platform)
        return messages, woken

    async def apply(
        self, conn: Conn, command: PractitionerCommandV1
    ) -> tuple[list[OutgoingMessage], str | None]:
        """Apply one command once; returns its events and the platform whose worker must
        poll the escalation (escalated by hand to a platform with a status API), if any."""
        assert command.escalation_id is not None
        # Taken first: a second process applying the same command waits here for the
        # first's transaction, then finds it taken.
        fresh = await conn.fetchval(
            """INSERT INTO escalator.applied_commands
                   (command_id, escalation_id, case_id, action, actor, result)
               VALUES ($1, $2, $3, $4, $5, 'ok') ON CONFLICT DO NOTHING RETURNING 1""",
            command.command_id,
            command.escalation_id,
            command.case_id,
            command.action,
            command.actor,
        )
        if not fresh:
            return [], None
        row = await conn.fetchrow(
            "SELECT * FROM escalator.escalations WHERE escalation_id = $1 FOR UPDATE",
            command.escalation_id,
        )
        platform = row["platform"] if row is not None else "unknown"
        try:
            reached, polled = await self._act(conn, command, row)
        except RefusedError as refusal:
            reason = str(refusal)
            await conn.execute(
                """UPDATE escalator.applied_commands SET result = 'refused', reason = $2
                   WHERE command_id = $1""",
                command.command_id,
                reason,
            )
            log.info("practitioner command refused", action=command.action, reason=reason)
            return [practitioner_message(command, platform, result="refused", error=reason)], None
        log.info("practitioner command applied", action=command.action)
        messages = await announce(conn, [reached]) if reached is not None else []
        messages.append(practitioner_message(command, platform, result="ok"))
        return messages, platform if polled else None

    async def _act(
        self, conn: Conn, command: PractitionerCommandV1, row: Any
    ) -> tuple[Reached | None, bool]:
        if row is None:
            raise RefusedError("no such escalation")
        linked = await conn.fetchval(
            """SELECT 1 FROM escalator.escalation_cases
               WHERE escalation_id = $1 AND case_id = $2 AND unlinked_at IS NULL""",
            command.escalation_id,
            command.case_id,
        )
        if not linked:
            raise RefusedError("the case is not linked to this escalation")
        state: str = row["state"]
        if command.action == "appeal":
            if state != "decided" or row["decision"] != "no_violation":
                raise RefusedError(
                    f"only a no_violation decision can be appealed; this escalation is {state}"
                    + (f" ({row['decision']})" if row["decision"] else "")
                )
            if row["appeal_requested_at"] is not None:
                raise RefusedError("an appeal was already requested for this escalation")
            await conn.execute(
                """UPDATE escalator.escalations
                   SET appeal_requested_at = now(), appeal_actor = $2, appeal_note = $3,
                       appeal_command_id = $4, updated_at = now()
                   WHERE escalation_id = $1""",
                row["escalation_id"],
                command.actor,
                command.note,
                command.command_id,
            )
            return None, False
        if command.action == "escalated_by_hand":
            if state not in BY_HAND_FROM:
                raise RefusedError(
                    f"escalated by hand applies to an escalation waiting for a person or "
                    f"failed; this one is {state}"
                )
            return await self._by_hand(conn, command, row)
        if command.action == "platform_decision" and state == "appealed":
            return await self._appeal_answered(conn, command, row), False
        if state in CLOSED_ROW_STATES:
            raise RefusedError(f"the escalation is already {state}")
        if command.action == "platform_decision":
            new_state, decision = "decided", command.decision
        else:  # advice_only
            new_state, decision = "closed", None
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = $2, decision = COALESCE($3, decision), claimed_at = NULL,
                   next_action_at = $4, reason = NULL, updated_at = now(),
                   decided_at = CASE WHEN $2 = 'decided' THEN now() ELSE decided_at END
               WHERE escalation_id = $1""",
            row["escalation_id"],
            new_state,
            decision,
            NEVER,
        )
        reached = Reached(
            row["escalation_id"],
            new_state,
            row["attempts"],
            utcnow(),
            decision=decision,
            reference=row["platform_reference"],
            actor=command.actor,
            note=command.note,
            occurrence=await _occurrence(conn, row["escalation_id"], new_state, command),
        )
        return reached, False

    async def _appeal_answered(
        self, conn: Conn, command: PractitionerCommandV1, row: Any
    ) -> Reached:
        contested = row["appealed_decision"] or row["decision"]
        overturned = command.decision != contested
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'appeal_decided', decision = $2, appeal_decision = $2,
                   appeal_overturned = $3, appeal_decided_at = now(), appeal_next_at = NULL,
                   updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            command.decision,
            overturned,
        )
        return Reached(
            row["escalation_id"],
            "appeal_decided",
            row["attempts"],
            utcnow(),
            decision=command.decision,
            reference=row["platform_reference"],
            reason="the appeal "
            + ("overturned the decision" if overturned else "upheld the decision")
            + ", recorded by a practitioner",
            actor=command.actor,
            note=command.note,
            overturned=overturned,
            followups=row["followups"],
            occurrence=await _occurrence(conn, row["escalation_id"], "appeal_decided", command),
        )

    async def _by_hand(
        self, conn: Conn, command: PractitionerCommandV1, row: Any
    ) -> tuple[Reached, bool]:
        polled = row["route"] != "hotline" and self._polled(row["platform"])
        next_at = utcnow() + timedelta(seconds=self._status_interval_s) if polled else NEVER
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'submitted', platform_reference = $2, claimed_at = NULL,
                   next_action_at = $3, status_checks = 0, reason = NULL, updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            command.platform_reference,
            next_at,
        )
        reached = Reached(
            row["escalation_id"],
            "submitted",
            row["attempts"],
            utcnow(),
            reference=command.platform_reference,
            actor=command.actor,
            note=command.note,
            occurrence=await _occurrence(conn, row["escalation_id"], "submitted", command),
        )
        return reached, polled


async def _occurrence(
    conn: Conn, escalation_id: uuid.UUID, state: str, command: PractitionerCommandV1
) -> str:
    """'' the first time the escalation reaches `state`; else the command's id."""
    return str(command.command_id) if await reached_before(conn, escalation_id, state) else ""
