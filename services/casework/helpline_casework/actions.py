"""Practitioners' actions: checked against the read model, stored, and published as commands.

Delivery: an accepted action is never lost. The command is stored in `casework.commands`
(so the case shows it at once, as pending) and added to the transactional outbox in the
same transaction; the outbox relays it to `helpline.practitioner.commands` (keyed by case
id, so one case's commands stay in order) at least once. The escalator applies escalation
actions and triage applies `retriage`; both re-check the action against their own state
and deduplicate on `command_id`, and report the result as activity and outcome events,
which turn the pending action into applied or refused.

The checks here answer early with what is wrong (:class:`ActionRefused`): 404 for an
unknown escalation or case, 409 for an action its current state does not allow (an appeal
on anything but a decided `no_violation`), 422 for a missing or misplaced reference or
decision. They read the read model, which may lag the escalator by a moment; the
escalator's own check is the one that decides.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from helpline_shared import cloudevents
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Conn, Database
from helpline_shared.events import (
    Decision,
    HarmType,
    NonEmpty,
    PractitionerCommandV1,
    RetriageOverride,
    Route,
    Urgency,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import get_logger
from helpline_shared.outbox import Outbox
from helpline_shared.topics import PRACTITIONER_COMMANDS

SOURCE = "urn:helpline:casework"
EscalationAction = Literal["escalated_by_hand", "platform_decision", "advice_only", "appeal"]

# The states in which each action may be taken (the escalator checks again).
_OPEN = frozenset({"submitted", "needs_manual", "failed", "breached"})
ALLOWED_STATES: dict[str, frozenset[str]] = {
    "escalated_by_hand": frozenset({"needs_manual", "failed", "breached"}),
    "platform_decision": _OPEN | {"appealed"},
    "advice_only": _OPEN,
    "appeal": frozenset({"decided"}),
}


CSAM_NOT_TO_PLATFORMS = (
    "child sexual imagery is reported to the national hotline, never by a platform's notice "
    "channel: choose route hotline (or manual, for a person to handle)"
)


class ActionRefused(Exception):  # noqa: N818 (it is an answer, not a failure)
    """An action that cannot be taken, with the HTTP status that says why."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class ActionRequest(BaseModel):
    """What a practitioner records about an escalation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: EscalationAction = Field(
        description="escalated_by_hand (with platform_reference), platform_decision (with "
        "decision), advice_only (closes it), or appeal (of a no_violation decision)."
    )
    note: NonEmpty = Field(max_length=4000, description="What happened, in words.")
    platform_reference: Annotated[str, StringConstraints(strip_whitespace=True)] | None = Field(
        None,
        max_length=200,
        description="The platform's reference (escalated_by_hand only); blank is none.",
    )
    decision: Decision | None = Field(
        None, description="The platform's decision (platform_decision only)."
    )
    case_id: uuid.UUID | None = Field(
        None, description="The case acted from, when several share the escalation."
    )


class RetriageRequest(BaseModel):
    """A practitioner's override of a case's triage decision."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    harm_types: list[HarmType] = Field(min_length=1, max_length=11)
    urgency: Urgency
    route: Route
    note: NonEmpty = Field(max_length=4000, description="Why the decision is overridden.")


class Actions:
    """Accepts practitioners' actions and publishes them as commands through the outbox."""

    def __init__(self, db: Database, outbox: Outbox) -> None:
        self._db = db
        self._outbox = outbox
        self._log = get_logger("helpline.casework.actions")

    async def act(self, key: KeyInfo, escalation_id: uuid.UUID, req: ActionRequest) -> uuid.UUID:
        """Record `req` on the escalation; returns the command id. Raises ActionRefused."""
        _check_fields(req)
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT case_id, state, decision FROM casework.escalations "
                "WHERE escalation_id = $1 ORDER BY received_at, case_id",
                escalation_id,
            )
            if not rows:
                raise ActionRefused(404, f"no escalation {escalation_id} is known")
            row = rows[0]
            if req.case_id is not None:
                chosen = next((r for r in rows if r["case_id"] == req.case_id), None)
                if chosen is None:
                    raise ActionRefused(
                        404, f"case {req.case_id} is not linked to escalation {escalation_id}"
                    )
                row = chosen
            _check_state(req, row["state"], row["decision"])
            command = PractitionerCommandV1(
                command_id=uuid.uuid4(),
                case_id=row["case_id"],
                escalation_id=escalation_id,
                action=req.action,
                actor=key.key_id,
                issued_at=utcnow(),
                note=req.note,
                platform_reference=req.platform_reference,
                decision=req.decision,
            )
            await self._store(conn, command)
        self._outbox.wake()
        self._log.info(
            "practitioner action accepted",
            command_id=str(command.command_id),
            case_id=str(command.case_id),
            escalation_id=str(escalation_id),
            action=req.action,
            actor=key.key_id,
        )
        return command.command_id

    async def retriage(self, key: KeyInfo, case_id: uuid.UUID, req: RetriageRequest) -> uuid.UUID:
        """Ask triage to replace the case's decision; returns the command id. Child sexual
        imagery on the platform route is refused (422): it goes to the national hotline,
        never to a platform's notice channel."""
        if "child_sexual_imagery" in req.harm_types and req.route == "platform":
            raise ActionRefused(422, CSAM_NOT_TO_PLATFORMS)
        async with self._db.pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM casework.cases WHERE case_id = $1)", case_id
            ):
                raise ActionRefused(404, f"no case {case_id} is known")
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM casework.decisions WHERE case_id = $1)", case_id
            ):
                raise ActionRefused(409, "the case has no triage decision yet to override")
            command = PractitionerCommandV1(
                command_id=uuid.uuid4(),
                case_id=case_id,
                action="retriage",
                actor=key.key_id,
                issued_at=utcnow(),
                note=req.note,
                retriage=RetriageOverride(
                    harm_types=sorted(set(req.harm_types)), urgency=req.urgency, route=req.route
                ),
            )
            await self._store(conn, command)
        self._outbox.wake()
        self._log.info(
            "re-triage accepted",
            command_id=str(command.command_id),
            case_id=str(case_id),
            actor=key.key_id,
        )
        return command.command_id

    async def _store(self, conn: Conn, command: PractitionerCommandV1) -> None:
        await conn.execute(
            """INSERT INTO casework.commands (command_id, case_id, escalation_id, action, actor,
                   issued_at, note, platform_reference, decision, retriage)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::text::jsonb)""",
            command.command_id,
            command.case_id,
            command.escalation_id,
            command.action,
            command.actor,
            command.issued_at,
            command.note,
            command.platform_reference,
            command.decision,
            command.retriage.model_dump_json() if command.retriage else None,
        )
        await self._outbox.add(conn, [command_message(command)])


def command_message(command: PractitionerCommandV1) -> OutgoingMessage:
    """The command as published: keyed by case id, CloudEvents headers from casework."""
    return cloudevents.event_message(
        PRACTITIONER_COMMANDS.name,
        command,
        event_id=command.command_id,
        key=command.case_id,
        type_="helpline.practitioner.command.v1",
        source=SOURCE,
        time=command.issued_at,
        subject=command.case_id,
    )


def _check_fields(req: ActionRequest) -> None:
    if req.action == "escalated_by_hand" and not req.platform_reference:
        raise ActionRefused(422, "escalated_by_hand needs platform_reference: the platform's")
    if req.action != "escalated_by_hand" and req.platform_reference:
        raise ActionRefused(422, "platform_reference goes only with escalated_by_hand")
    if req.action == "platform_decision" and req.decision is None:
        raise ActionRefused(422, "platform_decision needs decision: what the platform decided")
    if req.action != "platform_decision" and req.decision is not None:
        raise ActionRefused(422, "decision goes only with platform_decision")


def _check_state(req: ActionRequest, state: str, decision: str | None) -> None:
    allowed = ALLOWED_STATES[req.action]
    if state not in allowed:
        raise ActionRefused(
            409,
            f"{req.action} is not possible on an escalation in state {state} "
            f"(only in {', '.join(sorted(allowed))})",
        )
    if req.action == "appeal" and decision != "no_violation":
        raise ActionRefused(
            409, f"only a no_violation decision can be appealed; this one is {decision}"
        )
