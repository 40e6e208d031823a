"""Practitioners' commands applied by the escalator as deployed (its app served, on a
dedicated Tansu broker, real PostgreSQL and the simulator): each action applied with its
outcome (actor, note) on the outcomes topic and its activity event; each refusal an
activity event with the reason and no state change; a redelivered command changes and
publishes nothing again; an invalid one is dead-lettered with the reason; a decision
recorded by hand stops the platform's polling; a notice escalated by hand is chased on a
platform with a status API and waits for a person on one without."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.commands import Commands
from helpline_escalator.dispatcher import notice_for
from helpline_escalator.links import link_cases
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    PractitionerCommandV1,
    utcnow,
)
from helpline_shared.topics import (
    CASES_TRIAGED,
    DEAD_LETTERS,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
    PRACTITIONER_COMMANDS,
)
from tests.conftest import opened_database
from tests.escalator_support import Stack, escalator_stack, eventually, triaged
from tests.helpers import read_topic
from tests.infra import Infra

NEVER = datetime(9999, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    async with escalator_stack(infra, tmp_dir) as s:
        yield s


@pytest.fixture
async def control(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=stack.simulator) as session:
        await session.post(
            "/_sim/config",
            json={"latency_ms": 0, "error_rate": 0, "rate_limit_rate": 0, "decision_delay_ms": 0},
        )
        yield session


def command(case: CaseTriagedV1, escalation_id: uuid.UUID | None, action: str, **kw: Any) -> Any:
    return PractitionerCommandV1.model_validate(
        {
            "command_id": uuid.uuid4(),
            "case_id": case.case_id,
            "escalation_id": escalation_id,
            "action": action,
            "actor": "key-practitioner-1",
            "issued_at": utcnow(),
            "note": f"note for {action}",
            **kw,
        }
    )


async def escalation_of(stack: Stack, case: CaseTriagedV1) -> Any:
    async def linked() -> Any:
        return await stack.db.pool.fetchrow(
            """SELECT e.* FROM escalator.escalations e
               JOIN escalator.escalation_cases l USING (escalation_id)
               WHERE l.case_id = $1""",
            case.case_id,
        )

    return await eventually(linked, "the case linked to an escalation")


async def open_case(stack: Stack, url: str, *, platform: str, route: str = "platform") -> Any:
    case = triaged(url, platform, route=route, urgency="high")
    await stack.publish(CASES_TRIAGED.name, case.case_id, case)
    return case, await escalation_of(stack, case)


async def in_state(stack: Stack, eid: uuid.UUID, state: str) -> Any:
    """The escalation once it is in `state` (a manual channel's is queued, then handed to
    a person by its worker)."""

    async def reached() -> Any:
        r = await row(stack, eid)
        return r if r["state"] == state else None

    return await eventually(reached, f"the escalation {state}")


async def run(stack: Stack, cmd: PractitionerCommandV1) -> Any:
    """Publish `cmd` and wait until the escalator recorded it (applied or refused)."""
    await stack.publish(PRACTITIONER_COMMANDS.name, cmd.case_id, cmd)

    async def recorded() -> Any:
        return await stack.db.pool.fetchrow(
            "SELECT * FROM escalator.applied_commands WHERE command_id = $1", cmd.command_id
        )

    return await eventually(recorded, f"command {cmd.action} recorded")


async def row(stack: Stack, eid: uuid.UUID) -> Any:
    return await stack.db.pool.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1", eid
    )


async def published(stack: Stack) -> None:
    """Wait until the escalator's outbox is empty (everything queued is on the broker)."""

    async def empty() -> bool:
        return await stack.db.pool.fetchval("SELECT count(*) FROM outbox") == 0

    await eventually(empty, "the outbox relayed")


async def outcomes(stack: Stack, case: CaseTriagedV1) -> list[EscalationOutcomeV1]:
    await published(stack)
    key = str(case.case_id).encode()
    records = await read_topic(stack.servers, ESCALATION_OUTCOMES.name, keep=lambda r: r.key == key)
    return [EscalationOutcomeV1.model_validate_json(r.value) for r in records]


async def activity(stack: Stack, eid: uuid.UUID) -> list[EscalationActivityV1]:
    await published(stack)
    key = str(eid).encode()
    records = await read_topic(stack.servers, ESCALATION_ACTIVITY.name, keep=lambda r: r.key == key)
    return [EscalationActivityV1.model_validate_json(r.value) for r in records]


async def test_escalated_by_hand_on_a_platform_without_status_api_waits_for_a_person(
    stack: Stack,
) -> None:
    case, esc = await open_case(stack, "https://chat.whatsapp.com/AbCdEf1", platform="whatsapp")
    await in_state(stack, esc["escalation_id"], "needs_manual")
    cmd = command(case, esc["escalation_id"], "escalated_by_hand", platform_reference="WA-77")
    applied = await run(stack, cmd)
    assert (applied["result"], applied["reason"]) == ("ok", None)
    after = await row(stack, esc["escalation_id"])
    assert (after["state"], after["platform_reference"]) == ("submitted", "WA-77")
    assert after["next_action_at"] == NEVER  # no status API: never polled
    submitted = [o for o in await outcomes(stack, case) if o.state == "submitted"]
    assert len(submitted) == 1
    assert (submitted[0].actor, submitted[0].note, submitted[0].platform_reference) == (
        "key-practitioner-1",
        "note for escalated_by_hand",
        "WA-77",
    )
    mine = [a for a in await activity(stack, esc["escalation_id"]) if a.event_id == cmd.command_id]
    assert len(mine) == 1
    assert (mine[0].kind, mine[0].action, mine[0].result, mine[0].actor) == (
        "practitioner",
        "escalated_by_hand",
        "ok",
        "key-practitioner-1",
    )
    assert mine[0].command_id == cmd.command_id
    assert mine[0].note == cmd.note


async def test_a_redelivered_command_changes_and_publishes_nothing_again(stack: Stack) -> None:
    case, esc = await open_case(stack, "https://chat.whatsapp.com/Redeliver2", platform="whatsapp")
    await in_state(stack, esc["escalation_id"], "needs_manual")
    cmd = command(case, esc["escalation_id"], "advice_only")
    await run(stack, cmd)
    closed_at = (await row(stack, esc["escalation_id"]))["updated_at"]
    await stack.publish(PRACTITIONER_COMMANDS.name, case.case_id, cmd)  # redelivered
    marker = command(case, esc["escalation_id"], "advice_only")  # after it, same partition
    assert (await run(stack, marker))["result"] == "refused"
    assert (await row(stack, esc["escalation_id"]))["updated_at"] == closed_at
    closed = [o for o in await outcomes(stack, case) if o.state == "closed"]
    assert len(closed) == 1
    assert closed[0].actor == "key-practitioner-1"
    acts = [a for a in await activity(stack, esc["escalation_id"]) if a.kind == "practitioner"]
    assert [(a.event_id, a.result) for a in acts] == [
        (cmd.command_id, "ok"),
        (marker.command_id, "refused"),
    ]
    assert acts[1].error == "the escalation is already closed"


async def test_a_decision_recorded_by_hand_is_announced_and_stops_the_polling(
    stack: Stack, control: aiohttp.ClientSession
) -> None:
    await control.post("/_sim/config", json={"decision_delay_ms": 600_000})
    case, esc = await open_case(stack, "https://www.tiktok.com/@a/video/100001", platform="tiktok")
    eid = esc["escalation_id"]

    async def submitted() -> bool:
        return bool((await row(stack, eid))["state"] == "submitted")

    await eventually(submitted, "the notice submitted")
    cmd = command(case, eid, "platform_decision", decision="removed")
    await run(stack, cmd)
    after = await row(stack, eid)
    assert (after["state"], after["decision"], after["claimed_at"]) == ("decided", "removed", None)
    assert after["next_action_at"] == NEVER
    calls = await stack.db.pool.fetchval(
        "SELECT count(*) FROM escalator.attempts WHERE escalation_id = $1", eid
    )
    await asyncio.sleep(1.0)  # several status intervals: no more calls
    assert (
        await stack.db.pool.fetchval(
            "SELECT count(*) FROM escalator.attempts WHERE escalation_id = $1", eid
        )
        == calls
    )
    decided = [o for o in await outcomes(stack, case) if o.state == "decided"]
    assert [(o.decision, o.actor, o.note) for o in decided] == [
        ("removed", "key-practitioner-1", "note for platform_decision")
    ]


async def test_escalated_by_hand_on_a_platform_with_a_status_api_is_chased_to_its_decision(
    stack: Stack, control: aiohttp.ClientSession
) -> None:
    # Triage could not route it (manual), but the platform has an API: the practitioner
    # reports it in the platform's portal and records its reference.
    url = "https://www.tiktok.com/@b/video/200002"
    case, esc = await open_case(stack, url, platform="tiktok", route="manual")
    await in_state(stack, esc["escalation_id"], "needs_manual")
    async with aiohttp.ClientSession() as http:
        portal = await TikTokAdapter(http, stack.simulator).submit(
            notice_for({**dict(esc), "escalation_id": uuid.uuid4()}, stack.settings)
        )
    cmd = command(
        case, esc["escalation_id"], "escalated_by_hand", platform_reference=portal.reference
    )
    await run(stack, cmd)

    async def decided() -> Any:
        r = await row(stack, esc["escalation_id"])
        return r if r["state"] == "decided" else None

    done = await eventually(decided, "the platform's decision fetched by status checks")
    assert done["platform_reference"] == portal.reference
    kinds = await stack.db.pool.fetch(
        "SELECT kind FROM escalator.attempts WHERE escalation_id = $1", esc["escalation_id"]
    )
    assert {k["kind"] for k in kinds} == {"status"}  # never a notice of our own
    states = [o.state for o in await outcomes(stack, case)]
    assert states == ["needs_manual", "submitted", "decided"]


async def test_an_appeal_is_applied_only_on_a_no_violation_decision(stack: Stack) -> None:
    case, esc = await open_case(stack, "https://chat.whatsapp.com/Appeal3", platform="whatsapp")
    eid = esc["escalation_id"]
    await in_state(stack, eid, "needs_manual")
    early = command(case, eid, "appeal")
    refused = await run(stack, early)
    assert refused["result"] == "refused"
    assert refused["reason"] == (
        "only a no_violation decision can be appealed; this escalation is needs_manual"
    )
    await run(stack, command(case, eid, "platform_decision", decision="no_violation"))
    appeal = command(case, eid, "appeal")
    assert (await run(stack, appeal))["result"] == "ok"
    acts = {a.event_id: a for a in await activity(stack, eid)}
    assert (acts[early.command_id].result, acts[appeal.command_id].result) == ("refused", "ok")
    assert acts[appeal.command_id].action == "appeal"


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_esc_commands_db") as database:
        yield database


async def test_an_appeal_marks_the_escalation_for_the_appeal_loop_once(db: Database) -> None:
    """On PostgreSQL alone (no appeal loop running): the marker the loop picks up."""
    case = triaged("https://chat.whatsapp.com/Appeal6", "whatsapp", route="manual", urgency="high")
    commands = Commands(polled=lambda _: False, status_interval_s=1)
    async with db.pool.acquire() as conn, conn.transaction():
        await link_cases(conn, [case])
    eid = await db.pool.fetchval("SELECT escalation_id FROM escalator.escalations")
    decided = command(case, eid, "platform_decision", decision="no_violation")
    appeal = command(case, eid, "appeal")
    twice = command(case, eid, "appeal")
    async with db.pool.acquire() as conn, conn.transaction():
        messages, _ = await commands.apply_all(conn, [decided, appeal, twice])
    marked = await db.pool.fetchrow("SELECT * FROM escalator.escalations")
    assert marked["appeal_requested_at"] is not None
    assert (marked["appeal_actor"], marked["appeal_note"], marked["appeal_command_id"]) == (
        "key-practitioner-1",
        "note for appeal",
        appeal.command_id,
    )
    acts = [
        EscalationActivityV1.model_validate_json(m.value)
        for m in messages
        if m.topic == ESCALATION_ACTIVITY.name
    ]
    assert [(a.event_id, a.result, a.error) for a in acts] == [
        (decided.command_id, "ok", None),
        (appeal.command_id, "ok", None),
        (twice.command_id, "refused", "an appeal was already requested for this escalation"),
    ]
    told = [
        EscalationOutcomeV1.model_validate_json(m.value)
        for m in messages
        if m.topic == ESCALATION_OUTCOMES.name
    ]
    assert [o.state for o in told] == ["decided"]  # `appealed` is the loop's to announce
    async with db.pool.acquire() as conn, conn.transaction():
        again, _ = await commands.apply_all(conn, [decided, appeal, twice])
    assert again == []  # each command once


async def test_refusals_change_nothing_and_say_why(stack: Stack) -> None:
    case, esc = await open_case(stack, "https://chat.whatsapp.com/Refuse4", platform="whatsapp")
    eid = esc["escalation_id"]
    await in_state(stack, eid, "needs_manual")
    other, _ = await open_case(stack, "https://chat.whatsapp.com/Other5", platform="whatsapp")
    unknown = command(case, uuid.uuid4(), "advice_only")
    not_linked = command(other, eid, "advice_only")
    wrong_state = command(case, eid, "platform_decision", decision="removed")
    by_hand_after = command(case, eid, "escalated_by_hand", platform_reference="WA-1")
    assert (await run(stack, unknown))["reason"] == "no such escalation"
    assert (await run(stack, not_linked))["reason"] == "the case is not linked to this escalation"
    await run(stack, wrong_state)  # applies: needs_manual is open
    refused = await run(stack, by_hand_after)
    assert refused["reason"] == (
        "escalated by hand applies to an escalation waiting for a person or failed; "
        "this one is decided"
    )
    after = await row(stack, eid)
    assert (after["state"], after["platform_reference"]) == ("decided", None)
    acts = {a.event_id: a for a in await activity(stack, eid)}
    assert acts[not_linked.command_id].result == "refused"
    assert acts[not_linked.command_id].error == "the case is not linked to this escalation"
    assert acts[by_hand_after.command_id].result == "refused"
    unknown_acts = await activity(stack, unknown.escalation_id)  # type: ignore[arg-type]
    assert [(a.result, a.platform, a.error) for a in unknown_acts] == [
        ("refused", "unknown", "no such escalation")
    ]
    states = [o.state for o in await outcomes(stack, case)]
    assert states == ["needs_manual", "decided"]


async def test_an_invalid_command_is_dead_lettered_with_the_reason(stack: Stack) -> None:
    key = uuid.uuid4()
    bad = json.dumps(
        {
            "schema_version": 1,
            "command_id": str(uuid.uuid4()),
            "case_id": str(key),
            "escalation_id": str(uuid.uuid4()),
            "action": "platform_decision",
            "actor": "key-1",
            "issued_at": utcnow().isoformat(),
            "note": "decided",
        }
    ).encode()
    await stack.publish(PRACTITIONER_COMMANDS.name, key, bad)
    dead = await read_topic(
        stack.servers,
        DEAD_LETTERS["escalator"].name,
        keep=lambda r: r.key == str(key).encode(),
        expected=1,
    )
    assert dead[0].value == bad
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["dlq_source_topic"] == PRACTITIONER_COMMANDS.name
    assert "invalid practitioner command" in headers["dlq_error"]
    assert "decision is given with, and only with, platform_decision" in headers["dlq_error"]
