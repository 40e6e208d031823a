"""Casework's projection on real PostgreSQL, a batch at a time: each table is written with a
few set-based statements per batch, and the read model a batch builds is the one its events
build applied one at a time, in the same order: several events of one escalation or one
reporter in a batch (in and out of order, ties included), a duplicate within a batch, a
redelivered batch, and an invalid record dead-lettered while the rest of its batch applies."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from pydantic import BaseModel

from helpline_casework import projection
from helpline_casework.usecase import Casework
from helpline_shared.consumer import DeadLetters, Record
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    Reporter,
    ReporterDetailsV1,
)
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
)
from tests.conftest import opened_database
from tests.infra import Infra
from tests.test_casework_readmodel import T0, at, one_case, opened, read

TABLES = ("cases", "decisions", "states", "escalations", "activity", "reporters")
STATES = (
    "submitted",
    "decided",
    "failed",
    "needs_manual",
    "breached",
    "closed",
    "appealed",
    "appeal_decided",
)
DECISIONS = (None, None, "removed", "no_violation", "labelled")
URL_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
TOPIC_OF: dict[type[BaseModel], str] = {
    CaseOpenedV1: CASES_OPENED.name,
    CaseTriagedV1: CASES_TRIAGED.name,
    EscalationOutcomeV1: ESCALATION_OUTCOMES.name,
    EscalationActivityV1: ESCALATION_ACTIVITY.name,
    ReporterDetailsV1: CASE_REPORTERS.name,
}


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_casework_batches") as database:
        yield database


async def apply(db: Database, events: Sequence[Any]) -> list[Any]:
    async with db.pool.acquire() as conn, conn.transaction():
        return await projection.apply(conn, events)


async def one_by_one(db: Database, events: Sequence[Any]) -> None:
    for e in events:
        await apply(db, [e])


def history(rng: random.Random, case_id: uuid.UUID, n: int) -> list[EscalationOutcomeV1]:
    """`n` outcomes of one escalation with random facts; several share an `occurred_at`."""
    escalation_id = uuid.uuid5(case_id, "escalation")
    return [
        EscalationOutcomeV1(
            event_id=uuid.uuid4(),
            case_id=case_id,
            escalation_id=escalation_id,
            platform="tiktok",
            url="https://www.tiktok.com/@fake_head",
            state=rng.choice(STATES),
            decision=rng.choice(DECISIONS),
            platform_reference=rng.choice((None, "TT-1", "TT-2")),
            attempts=rng.randint(0, 4),
            reason=rng.choice((None, "timeout", "no platform")),
            received_at=T0,
            occurred_at=at(rng.randint(0, 4)),
            url_id=rng.choice((None, URL_ID)),
            linked_at=rng.choice((None, at(0), at(1))),
            route=rng.choice((None, "platform", "hotline", "manual")),
            due_at=rng.choice((None, at(60), at(120))),
            followups=rng.choice((None, 0, 1, 2)),
        )
        for _ in range(n)
    ]


def reporters(rng: random.Random, case_id: uuid.UUID, n: int) -> list[ReporterDetailsV1]:
    """`n` copies of a case's reporter, some of them erasures; several share a time."""
    return [
        ReporterDetailsV1(
            event_id=uuid.uuid4(),
            case_id=case_id,
            reporter=None
            if rng.random() < 0.3
            else Reporter(
                name=f"Teacher {rng.randint(1, 3)}",
                email=f"t{rng.randint(1, 3)}@school.example",
                role=rng.choice(("designated lead", "head teacher")),
            ),
            occurred_at=at(rng.randint(0, 4)),
        )
        for _ in range(n)
    ]


async def rows(db: Database, table: str, case_ids: Sequence[uuid.UUID]) -> list[dict[str, Any]]:
    """The table's rows of these cases, in the cases' order, without their ids."""
    async with db.pool.acquire() as conn:
        found = await conn.fetch(
            f"SELECT * FROM casework.{table} WHERE case_id = ANY($1::uuid[])",
            list(case_ids),
        )
    keep = [
        {k: v for k, v in r.items() if k not in ("case_id", "escalation_id", "event_id")}
        for r in sorted(found, key=lambda r: case_ids.index(r["case_id"]))
    ]
    return keep if table != "states" else sorted(keep, key=repr)


async def snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    async with db.pool.acquire() as conn:
        return {
            t: [dict(r) for r in await conn.fetch(f"SELECT * FROM casework.{t} ORDER BY 1, 2")]
            for t in TABLES
        }


def escalations(
    seed: int, case_ids: Sequence[uuid.UUID]
) -> tuple[list[EscalationOutcomeV1], list[EscalationOutcomeV1]]:
    """One outcome of each case's escalation, then 1 to 6 more of each, shuffled together:
    the same facts for the same seed, whatever the ids."""
    rng = random.Random(seed)
    earlier = [e for c in case_ids for e in history(rng, c, 1)]
    later = [e for c in case_ids for e in history(rng, c, rng.randint(1, 6))]
    rng.shuffle(later)
    return earlier, later


@pytest.mark.parametrize("seed", range(8))
async def test_one_escalation_s_events_in_one_batch_end_as_one_by_one(
    db: Database, seed: int
) -> None:
    """Several cases' escalations, each with several outcomes (in random order, equal times
    included) in one batch, on top of a state stored before: the rows the same events
    leave applied one at a time in the same order."""
    alone = [uuid.uuid4() for _ in range(6)]
    earlier, later = escalations(seed, alone)
    await one_by_one(db, [*earlier, *later])

    batched = [uuid.uuid4() for _ in range(6)]
    earlier, later = escalations(seed, batched)
    await apply(db, earlier)
    assert len(await apply(db, later)) == len(later)

    for table in ("escalations", "states"):
        assert await rows(db, table, batched) == await rows(db, table, alone)


async def test_a_state_without_a_decision_clears_it_for_a_breach_after_it(db: Database) -> None:
    """Why an escalation's events in one batch are written in rounds, not folded into one
    row first: `breached` keeps the decision the row holds, which a newer state without a
    decision cleared within the same batch."""
    case_id = uuid.uuid4()
    decided, submitted, breached = (
        EscalationOutcomeV1(
            event_id=uuid.uuid4(),
            case_id=case_id,
            escalation_id=case_id,
            platform="tiktok",
            url="https://www.tiktok.com/@fake_head",
            state=state,
            decision=decision,
            attempts=1,
            received_at=T0,
            occurred_at=at(minute),
        )
        for state, decision, minute in (
            ("decided", "removed", 1),
            ("submitted", None, 2),
            ("breached", None, 3),
        )
    )
    await apply(db, [decided])
    await apply(db, [submitted, breached])
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM casework.escalations WHERE case_id = $1", case_id)
    assert row is not None
    assert (row["state"], row["decision"]) == ("breached", None)


@pytest.mark.parametrize("seed", range(6))
async def test_a_case_s_reporter_copies_in_one_batch_end_as_one_by_one(
    db: Database, seed: int
) -> None:
    """Details and erasures of several cases' reporters in one batch, any order: the rows
    the events leave one at a time; an erasure stays one."""
    sizes = [random.Random(seed).randint(1, 5) for _ in range(8)]
    alone, batched = [uuid.uuid4() for _ in sizes], [uuid.uuid4() for _ in sizes]
    for case_ids, whole in ((alone, False), (batched, True)):
        rng = random.Random(seed)
        events = [e for c, n in zip(case_ids, sizes, strict=True) for e in reporters(rng, c, n)]
        rng.shuffle(events)
        if whole:
            await apply(db, events)
        else:
            await one_by_one(db, events)
    assert await rows(db, "reporters", batched) == await rows(db, "reporters", alone)
    for row in await rows(db, "reporters", batched):
        if row["erased_at"] is not None:
            assert (row["name"], row["email"], row["role"]) == (None, None, None)


async def test_a_duplicate_in_one_batch_is_applied_once(db: Database) -> None:
    case_id, events = one_case()
    twice = [*events, *events]
    applied = await apply(db, twice)
    assert [e.event_id for e in applied] == [e.event_id for e in events]
    async with db.pool.acquire() as conn:
        states = await conn.fetchval(
            "SELECT count(*) FROM casework.states WHERE case_id = $1", case_id
        )
        attempts = await conn.fetchval(
            "SELECT count(*) FROM casework.activity WHERE escalation_id = $1",
            events[6].escalation_id,
        )
    assert (states, attempts) == (3, 2)


async def test_a_case_opened_twice_in_one_batch_keeps_the_first(db: Database) -> None:
    """Two copies of one case under different event ids, and another case with the same
    report id: the first of each stays, as when they arrive one by one."""
    case_id = uuid.uuid4()
    first = opened(case_id, ['https://a.example/é?q="1"\\'], report_id="r-1")
    second = opened(case_id, ["https://b.example/"], report_id="r-1").model_copy(
        update={"event_id": uuid.uuid4(), "description": "changed"}
    )
    same_report = opened(uuid.uuid4(), ["https://c.example/"], report_id="r-1")
    assert len(await apply(db, [first, second, same_report])) == 3
    async with db.pool.acquire() as conn:
        found = await conn.fetch("SELECT * FROM casework.cases WHERE report_id = 'r-1'")
    assert [(r["case_id"], r["urls"], r["issue_types"]) for r in found] == [
        (case_id, first.urls, ["impersonation"])
    ]
    assert found[0]["description"] == first.description


async def test_a_batch_reads_as_its_cases_one_by_one_and_its_redelivery_changes_nothing(
    db: Database,
) -> None:
    """Twenty cases' events interleaved in one batch read as one case applied event by
    event; the same batch delivered again applies nothing and changes no row."""
    reference_id, reference = one_case()
    await one_by_one(db, reference)
    expected = await read(db, reference_id, contacts=True)

    cases = [one_case() for _ in range(20)]
    batch = [e for _, events in cases for e in events]
    random.Random(7).shuffle(batch)
    assert len(await apply(db, batch)) == len(batch)
    for case_id, _ in cases:
        case = await read(db, case_id, contacts=True)
        assert same_case(case, {str(case_id): str(reference_id)}) == same_case(expected, {})

    before = await snapshot(db)
    assert await apply(db, batch) == []
    assert await snapshot(db) == before


def same_case(case: Any, rename: dict[str, str]) -> Any:
    data = case.model_dump(mode="json")
    for key in ("case_id", "reference", "report_id"):
        data.pop(key)
    for e in data["escalations"]:
        e.pop("escalation_id")
        e.pop("url_id")
    for d in data["decisions"] + [data["decision"]]:
        for u in d["urls"]:
            u.pop("url_id")
    return data


def record(topic: str, value: bytes, offset: int) -> Record:
    return ConsumerRecord(topic, 0, offset, 0, 0, None, value, None, 0, len(value), [])


class RecordingDeadLetters(DeadLetters):
    def __init__(self) -> None:
        super().__init__("casework", max_ratio=1.0, window=100)
        self.added: list[tuple[int, str]] = []

    def add(self, record: Record, error: str) -> None:
        self.added.append((record.offset, error))
        super().add(record, error)


async def test_an_invalid_record_is_dead_lettered_and_the_rest_applied(db: Database) -> None:
    case_id, events = one_case()
    records = [
        record(TOPIC_OF[type(e)], e.model_dump_json().encode(), i) for i, e in enumerate(events)
    ]
    bad = record(CASES_OPENED.name, b'{"case_id": "not a uuid"}', len(records))
    dead = RecordingDeadLetters()
    await Casework(db, dead).process([*records[:3], bad, *records[3:]])
    assert [offset for offset, _ in dead.added] == [bad.offset]
    assert "invalid helpline.cases.opened" in dead.added[0][1]
    case = await read(db, case_id)
    assert case is not None
    assert [e.state for e in case.escalations] == ["decided", "needs_manual"]
