"""Appeals end to end: the escalator as deployed (its app served, on a dedicated Tansu
broker, real PostgreSQL and the simulator). A practitioner's `appeal` command on a "no
violation" decision reaches the platform's appeal route once; the case hears `appealed`
(who, and their note) and then `appeal_decided`: overturned to a takedown at overturn rate
1.0, upheld at 0.0. The simulator counts the appeals and the overturn, and no second
notice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from helpline_shared.events import (
    TAKEDOWN_DECISIONS,
    EscalationOutcomeV1,
    PractitionerCommandV1,
    utcnow,
)
from helpline_shared.topics import CASES_TRIAGED, PRACTITIONER_COMMANDS
from tests.infra import Infra
from tests.test_deadlines_e2e import Stack, casework_stack, eventually, triaged

NOTE = "The account copies the pupil's name and photos; it breaches the impersonation rule."


async def decided_no_violation(stack: Stack, url: str) -> tuple[uuid.UUID, uuid.UUID]:
    """Publish a case with `url` (Reddit) and wait for its "no violation" decision; its
    case id and escalation id."""
    case = triaged(url, "reddit", due_in_s=3600)
    await stack.publish(CASES_TRIAGED.name, case.case_id, case)

    async def decided() -> EscalationOutcomeV1 | None:
        events = await stack.outcomes({case.case_id})
        return next((e for e in events if e.state == "decided"), None)

    event = await eventually(decided, "the platform's decision")
    assert event.decision == "no_violation"
    return case.case_id, event.escalation_id


async def appeal(stack: Stack, case_id: uuid.UUID, escalation_id: uuid.UUID) -> None:
    command = PractitionerCommandV1.model_validate(
        {
            "command_id": uuid.uuid4(),
            "case_id": case_id,
            "escalation_id": escalation_id,
            "action": "appeal",
            "actor": "key-practitioner-7",
            "issued_at": utcnow(),
            "note": NOTE,
        }
    )
    await stack.publish(PRACTITIONER_COMMANDS.name, case_id, command)


async def appeal_outcome(stack: Stack, case_id: uuid.UUID) -> list[EscalationOutcomeV1]:
    async def done() -> list[EscalationOutcomeV1] | None:
        events = await stack.outcomes({case_id})
        return events if any(e.state == "appeal_decided" for e in events) else None

    events: list[EscalationOutcomeV1] = await eventually(done, "the appeal's outcome")
    return events


async def test_an_appeal_that_overturns_and_one_that_is_upheld(infra: Infra, tmp_dir: Path) -> None:
    # Reddit leaves content up only as "no violation": at takedown rate 0, every notice.
    sim: dict[str, Any] = {"platforms": {"reddit": {"takedown_rate": 0.0}}}
    async with casework_stack(infra, tmp_dir, sim) as stack:
        won = await decided_no_violation(stack, "https://www.reddit.com/r/school/comments/a1/")
        lost = await decided_no_violation(stack, "https://www.reddit.com/r/school/comments/b2/")

        await stack.simulate({"platforms": {"reddit": {"appeal_overturn_rate": 1.0}}})
        await appeal(stack, *won)
        overturned = await appeal_outcome(stack, won[0])
        await stack.simulate({"platforms": {"reddit": {"appeal_overturn_rate": 0.0}}})
        await appeal(stack, *lost)
        upheld = await appeal_outcome(stack, lost[0])

        for events, was_overturned in ((overturned, True), (upheld, False)):
            states = [e.state for e in events]
            assert states[-3:] == ["decided", "appealed", "appeal_decided"]
            appealed, result = events[-2], events[-1]
            assert (appealed.actor, appealed.note, appealed.decision) == (
                "key-practitioner-7",
                NOTE,
                "no_violation",
            )
            assert result.overturned is was_overturned
            assert result.platform_reference == appealed.platform_reference
        assert overturned[-1].decision in TAKEDOWN_DECISIONS
        assert upheld[-1].decision == "no_violation"

        reddit = await stack.activity("reddit")
        assert (reddit["notices"], reddit["appeals"], reddit["overturns"]) == (2, 2, 1)
        rows = await stack.db.pool.fetch(
            """SELECT escalation_id, state, decision, appeal_overturned
               FROM escalator.escalations WHERE platform = 'reddit'"""
        )
        by_id = {r["escalation_id"]: r for r in rows}
        assert by_id[won[1]]["state"] == by_id[lost[1]]["state"] == "appeal_decided"
        assert by_id[won[1]]["appeal_overturned"] is True
        assert (by_id[lost[1]]["decision"], by_id[lost[1]]["appeal_overturned"]) == (
            "no_violation",
            False,
        )
