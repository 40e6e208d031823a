"""Casework's read model on real PostgreSQL: built from events in any order, redelivered or
not, it reads back the same case; reporters' details only with contacts, erasure for good;
the case list's filters and the queue's order and filters."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from faststream.kafka import KafkaBroker

from helpline_casework import projection, queries
from helpline_casework.actions import ActionRefused, ActionRequest, Actions, RetriageRequest
from helpline_casework.queries import CaseFilters, QueueFilters
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    PractitionerCommandV1,
    Reporter,
    ReporterDetailsV1,
    RetriageOverride,
    RuleMatch,
    TriagedUrl,
    case_reference,
    derive_id,
    utcnow,
)
from helpline_shared.outbox import Outbox
from helpline_triage.override import retriaged_event_id as triage_retriaged_event_id
from tests.conftest import opened_database
from tests.infra import Infra

T0 = datetime.fromisoformat("2026-11-20T09:00:00+00:00")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def opened(case_id: uuid.UUID, urls: Sequence[str], **extra: Any) -> CaseOpenedV1:
    return CaseOpenedV1(
        event_id=derive_id("opened", case_id),
        case_id=case_id,
        source=extra.pop("source", "partner"),
        report_id=extra.pop("report_id", f"r-{case_id.hex[:8]}"),
        received_at=extra.pop("received_at", T0),
        organisation="Oakfield Primary School",
        description="A fake account is impersonating our head teacher.",
        urls=list(urls),
        issue_types=["impersonation"],
        **extra,
    )


def url_of(
    case_id: uuid.UUID, url: str, platform: str, route: str = "platform", reason: str | None = None
) -> TriagedUrl:
    return TriagedUrl(
        url_id=derive_id("url", case_id, url),
        url=url,
        normalized_url=url,
        platform=platform,
        route=route,  # type: ignore[arg-type]
        reason=reason,
    )


def triaged(
    case_id: uuid.UUID,
    urls: Sequence[TriagedUrl],
    *,
    urgency: str = "normal",
    route: str = "platform",
    revision: int = 1,
    harm_types: Sequence[str] = ("impersonation",),
    due_at: datetime | None = None,
    **extra: Any,
) -> CaseTriagedV1:
    return CaseTriagedV1(
        event_id=derive_id("triaged", case_id, revision),
        case_id=case_id,
        received_at=T0,
        triaged_at=at(revision),
        harm_types=list(harm_types),  # type: ignore[arg-type]
        lead_harm_type=harm_types[0],  # type: ignore[arg-type]
        urgency=urgency,  # type: ignore[arg-type]
        route=route,  # type: ignore[arg-type]
        rules_fired=["impersonation.fake_account"],
        matches=[RuleMatch(rule_id="impersonation.fake_account", evidence=["fake account"])],
        rules_version="2026.11",
        decision_due_at=due_at,
        urls=list(urls),
        revision=revision,
        **extra,
    )


def outcome(
    case_id: uuid.UUID,
    u: TriagedUrl,
    state: str,
    minute: float,
    *,
    escalation_id: uuid.UUID | None = None,
    **extra: Any,
) -> EscalationOutcomeV1:
    return EscalationOutcomeV1(
        event_id=derive_id("outcome", case_id, u.url_id, state),
        case_id=case_id,
        escalation_id=escalation_id or derive_id("esc", case_id, u.url),
        platform=u.platform,
        url=u.url,
        state=state,  # type: ignore[arg-type]
        attempts=extra.pop("attempts", 1),
        received_at=extra.pop("received_at", T0),
        occurred_at=at(minute),
        url_id=u.url_id,
        route=extra.pop("route", u.route),
        **extra,
    )


def activity(
    escalation_id: uuid.UUID, kind: str, minute: float, n: int = 0, **extra: Any
) -> EscalationActivityV1:
    return EscalationActivityV1(
        event_id=extra.pop("event_id", derive_id("activity", escalation_id, kind, n)),
        escalation_id=escalation_id,
        platform=extra.pop("platform", "tiktok"),
        kind=kind,  # type: ignore[arg-type]
        started_at=at(minute),
        finished_at=at(minute + 0.01),
        **extra,
    )


def reporter(case_id: uuid.UUID, minute: float, *, erased: bool = False) -> ReporterDetailsV1:
    return ReporterDetailsV1(
        event_id=derive_id("reporter", case_id, minute),
        case_id=case_id,
        reporter=None
        if erased
        else Reporter(name="A. Teacher", email="a.teacher@school.example", role="designated lead"),
        occurred_at=at(minute),
    )


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[Database]:
    async with opened_database(infra, "helpline_casework") as database:
        yield database


async def apply(db: Database, events: Sequence[Any]) -> list[Any]:
    async with db.pool.acquire() as conn, conn.transaction():
        return await projection.apply(conn, events)


async def read(db: Database, case_id: uuid.UUID, *, contacts: bool = False) -> Any:
    async with db.pool.acquire() as conn:
        return await queries.get_case(conn, case_id, contacts=contacts)


def one_case() -> tuple[uuid.UUID, list[Any]]:
    """A case with a TikTok URL that was submitted then decided (two attempts) and an
    unknown URL waiting for a person; its reporter; a practitioner's override."""
    case_id = uuid.uuid4()
    tiktok = url_of(case_id, "https://www.tiktok.com/@fake_head", "tiktok")
    unknown = url_of(case_id, "https://forum.example.org/t/1", "unknown", "manual", "no platform")
    esc = derive_id("esc", case_id, tiktok.url)
    events: list[Any] = [
        opened(case_id, [tiktok.url, unknown.url]),
        reporter(case_id, 0),
        triaged(case_id, [tiktok, unknown], due_at=at(72 * 60)),
        outcome(case_id, tiktok, "submitted", 2, platform_reference="TT-1", due_at=at(72 * 60)),
        outcome(
            case_id, tiktok, "decided", 9, decision="removed", platform_reference="TT-1", attempts=2
        ),
        outcome(case_id, unknown, "needs_manual", 2, reason="no platform", attempts=0),
        activity(esc, "submit", 1.5, http_status=201, result="ok"),
        activity(esc, "status", 8.5, http_status=200, result="ok"),
        triaged(
            case_id,
            [tiktok, unknown],
            urgency="high",
            revision=2,
            harm_types=("impersonation", "bullying_harassment"),
            overridden_by="abc123abc123",
            override_note="the account also threatens staff",
            supersedes=derive_id("triaged", case_id, 1),
        ),
    ]
    return case_id, events


async def test_a_case_reads_back_whole(db: Database) -> None:
    case_id, events = one_case()
    assert [e.event_id for e in await apply(db, events)] == [e.event_id for e in events]
    case = await read(db, case_id)
    assert case is not None
    assert case.reference == case_reference(case_id)
    assert case.reporter is None  # contact details only when asked for
    assert [d.revision for d in case.decisions] == [1, 2]
    assert case.decision.revision == 2
    assert case.decision.urgency == "high"
    assert case.decision.overridden_by == "abc123abc123"
    assert case.decisions[0].rules_fired == ["impersonation.fake_account"]
    assert case.decisions[0].matches[0].evidence == ["fake account"]
    assert case.decisions[0].rules_version == "2026.11"
    tiktok, unknown = case.escalations  # in the order the report listed them
    assert (tiktok.platform, tiktok.state, tiktok.decision) == ("tiktok", "decided", "removed")
    assert tiktok.platform_reference == "TT-1"
    assert tiktok.due_at == at(72 * 60)
    assert [s.state for s in tiktok.states] == ["submitted", "decided"]
    assert [(a.kind, a.http_status, a.result) for a in tiktok.attempts] == [
        ("submit", 201, "ok"),
        ("status", 200, "ok"),
    ]
    assert (unknown.state, unknown.reason, unknown.route) == (
        "needs_manual",
        "no platform",
        "manual",
    )
    assert not case.overdue
    with_contacts = await read(db, case_id, contacts=True)
    assert with_contacts.reporter.email == "a.teacher@school.example"
    assert not with_contacts.reporter.erased
    async with db.pool.acquire() as conn:
        assert await queries.by_reference(conn, case.reference) == case_id
        assert await queries.by_reference(conn, case.reference.lower().replace("-", "")) == case_id
        assert await queries.by_reference(conn, "not a reference") is None
        found = await queries.find_case(conn, source="partner", report_id=case.report_id)
        assert found is not None
        assert found.case_id == case_id
        assert await queries.find_case(conn, source="other", report_id=case.report_id) is None


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_any_order_and_redelivery_read_the_same(db: Database, seed: int) -> None:
    """Shuffled, split into batches, with every event delivered twice: the same case."""
    case_id, events = one_case()
    await apply(db, events)
    expected = await read(db, case_id, contacts=True)

    other_id, others = one_case()
    rng = random.Random(seed)
    shuffled = others + rng.sample(others, len(others))
    rng.shuffle(shuffled)
    applied = 0
    while shuffled:
        n = rng.randint(1, 4)
        applied += len(await apply(db, shuffled[:n]))
        shuffled = shuffled[n:]
    assert applied == len(others)  # each event applied once
    again = await read(db, other_id, contacts=True)
    rename = {str(other_id): str(case_id)}
    # Same content as the first case, apart from the ids.
    assert _without_ids(again, rename) == _without_ids(expected, {})


def _without_ids(case: Any, rename: dict[str, str]) -> Any:
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


async def test_an_outcome_before_its_case_shows_when_the_case_arrives(db: Database) -> None:
    case_id, events = one_case()
    opening = events[0]
    await apply(db, events[1:])
    assert await read(db, case_id) is None  # not a case until it is opened
    async with db.pool.acquire() as conn:
        assert case_id not in {c.case_id for c in await queries.list_cases(conn, CaseFilters())}
    await apply(db, [opening])
    case = await read(db, case_id)
    assert [e.state for e in case.escalations] == ["decided", "needs_manual"]


async def test_a_late_older_state_joins_the_history_and_moves_nothing(db: Database) -> None:
    case_id, events = one_case()
    tiktok_submitted, tiktok_decided = events[3], events[4]
    rest = [e for e in events if e not in (tiktok_submitted, tiktok_decided)]
    await apply(db, [*rest, tiktok_decided])
    await apply(db, [tiktok_submitted])  # arrives after the decision
    tiktok = (await read(db, case_id)).escalations[0]
    assert (tiktok.state, tiktok.decision) == ("decided", "removed")
    assert tiktok.due_at == at(72 * 60)  # kept from the earlier state
    assert [s.state for s in tiktok.states] == ["submitted", "decided"]


async def test_erasure_is_for_good(db: Database) -> None:
    case_id, events = one_case()
    await apply(db, events)
    await apply(db, [reporter(case_id, 30, erased=True)])
    await apply(db, [reporter(case_id, 20)])  # an older copy arriving late
    case = await read(db, case_id, contacts=True)
    assert case.reporter is not None
    assert case.reporter.erased
    assert (case.reporter.name, case.reporter.email, case.reporter.role) == (None, None, None)
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM casework.reporters WHERE case_id = $1", case_id)
        assert "a.teacher@school.example" not in str(dict(row))


async def test_the_list_filters(db: Database) -> None:
    first, events = one_case()
    await apply(db, events)
    late = uuid.uuid4()
    u = url_of(late, "https://www.instagram.com/p/abc/", "instagram")
    await apply(
        db,
        [
            opened(late, [u.url], received_at=at(60)),
            triaged(late, [u], urgency="critical", due_at=utcnow() - timedelta(minutes=5)),
            outcome(late, u, "submitted", 61, platform_reference="IG-9"),
        ],
    )

    async def ids(**kw: Any) -> list[uuid.UUID]:
        async with db.pool.acquire() as conn:
            return [c.case_id for c in await queries.list_cases(conn, CaseFilters(**kw))]

    assert await ids() == [late, first]  # newest first
    assert await ids(urgency="critical") == [late]
    assert await ids(urgency="high") == [first]  # the override's urgency
    assert await ids(platform="instagram") == [late]
    assert await ids(platform="unknown") == [first]
    assert await ids(state="needs_manual") == [first]
    assert await ids(state="submitted") == [late]
    assert await ids(overdue=True) == [late]  # past its deadline with no decision
    assert await ids(overdue=False) == [first]
    assert await ids(limit=1) == [late]
    assert await ids(limit=1, offset=1) == [first]
    async with db.pool.acquire() as conn:
        summary = (await queries.list_cases(conn, CaseFilters(platform="instagram")))[0]
    assert (summary.urgency, summary.platforms, summary.states, summary.overdue) == (
        "critical",
        ["instagram"],
        ["submitted"],
        True,
    )
    assert summary.reference == case_reference(late)


async def test_the_queue_order_and_filters(db: Database) -> None:
    now = utcnow()
    made: dict[str, uuid.UUID] = {}

    async def escalation(
        name: str,
        *,
        urgency: str,
        state: str,
        waited_min: float,
        platform: str = "tiktok",
        route: str = "platform",
        due_in_min: float = 600,
        **extra: Any,
    ) -> None:
        case_id = uuid.uuid4()
        u = url_of(case_id, f"https://example.org/{name}", platform, route)
        esc = derive_id("esc", name)
        made[name] = esc
        since = now - timedelta(minutes=waited_min)
        event = outcome(case_id, u, state, 0, escalation_id=esc, **extra)
        await apply(
            db,
            [
                opened(case_id, [u.url]),
                triaged(case_id, [u], urgency=urgency, due_at=now + timedelta(minutes=due_in_min)),
                event.model_copy(update={"occurred_at": since}),
            ],
        )

    await escalation("normal-new", urgency="normal", state="needs_manual", waited_min=5)
    await escalation("normal-old", urgency="normal", state="needs_manual", waited_min=50)
    await escalation("high-failed", urgency="high", state="failed", waited_min=1, reason="HTTP 400")
    await escalation("critical", urgency="critical", state="needs_manual", waited_min=2)
    await escalation("breached", urgency="normal", state="breached", waited_min=3)
    await escalation("overdue", urgency="normal", state="submitted", waited_min=2.5, due_in_min=-1)
    await escalation("hotline", urgency="normal", state="submitted", waited_min=1, route="hotline")
    await escalation("on-time", urgency="critical", state="submitted", waited_min=9)
    await escalation(
        "decided", urgency="critical", state="decided", waited_min=9, decision="removed"
    )
    await escalation("x-manual", urgency="high", state="needs_manual", waited_min=30, platform="x")

    async def names(**kw: Any) -> list[str]:
        async with db.pool.acquire() as conn:
            items = await queries.queue(conn, QueueFilters(**kw))
        back = {v: k for k, v in made.items()}
        return [back[i.escalation_id] for i in items]

    assert await names() == [
        "hotline",
        "breached",  # overdue ones next, oldest first
        "overdue",
        "critical",
        "x-manual",  # high, waiting longest
        "high-failed",
        "normal-old",
        "normal-new",
    ]
    assert await names(platform="x") == ["x-manual"]
    assert await names(urgency="critical") == ["critical"]
    assert await names(reason="http 4") == ["high-failed"]
    assert await names(reason="HOTLINE") == ["hotline"]
    assert await names(min_age_s=20 * 60) == ["x-manual", "normal-old"]
    assert await names(limit=2) == ["hotline", "breached"]
    async with db.pool.acquire() as conn:
        item = (await queries.queue(conn, QueueFilters(platform="x")))[0]
    assert item.urgency == "high"
    assert item.state == "needs_manual"
    assert 29 * 60 <= item.age_s <= 31 * 60
    assert item.reference == case_reference(item.case_id)


async def test_a_shared_escalation_is_one_queue_item(db: Database) -> None:
    """Two cases reporting the same content: one item, named by the first case, with the
    more urgent case's urgency."""
    esc = derive_id("esc", "shared")
    first, second = uuid.uuid4(), uuid.uuid4()
    for case_id, urgency, received in ((first, "normal", at(0)), (second, "critical", at(5))):
        u = url_of(case_id, "https://example.org/shared", "unknown", "manual")
        await apply(
            db,
            [
                opened(case_id, [u.url], received_at=received),
                triaged(case_id, [u], urgency=urgency),
                outcome(case_id, u, "needs_manual", 6, escalation_id=esc, received_at=received),
            ],
        )
    async with db.pool.acquire() as conn:
        items = await queries.queue(conn, QueueFilters())
    assert [(i.escalation_id, i.case_id, i.urgency) for i in items] == [(esc, first, "critical")]


def practitioner_key() -> KeyInfo:
    return KeyInfo(
        key_id="0123456789ab",
        name="tests",
        scopes=frozenset({"practitioner"}),
        source=None,
        created_at=T0,
        created_by="tests",
        revoked_at=None,
        last_used_at=None,
    )


def unpublished_actions(db: Database) -> Actions:
    """Actions whose outbox is never relayed here: the rows stay to be looked at."""
    return Actions(db, Outbox(db, KafkaBroker("127.0.0.1:1"), "casework"))


async def test_an_action_is_stored_with_its_command_in_the_outbox(db: Database) -> None:
    case_id, events = one_case()
    await apply(db, events)
    waiting = (await read(db, case_id)).escalations[1]
    actions = unpublished_actions(db)
    command_id = await actions.act(
        practitioner_key(),
        waiting.escalation_id,
        ActionRequest(action="platform_decision", note="they removed it", decision="removed"),
    )
    shown = (await read(db, case_id)).escalations[1].actions
    assert [(a.command_id, a.action, a.result, a.decision, a.actor) for a in shown] == [
        (command_id, "platform_decision", "pending", "removed", "0123456789ab")
    ]
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT topic, key, value FROM outbox WHERE service = 'casework' "
            "AND key = $1::text::bytea",
            str(case_id),
        )
    assert row["topic"] == "helpline.practitioner.commands"
    command = PractitionerCommandV1.model_validate_json(row["value"])
    assert (command.command_id, command.decision, command.note) == (
        command_id,
        "removed",
        "they removed it",
    )
    # Refused by the escalator: the action says so, with the reason.
    refused = activity(
        waiting.escalation_id,
        "practitioner",
        40,
        event_id=command_id,
        result="refused",
        error="already decided",
        action="platform_decision",
        command_id=command_id,
        actor="0123456789ab",
    )
    await apply(db, [refused])
    shown = (await read(db, case_id)).escalations[1].actions
    assert [(a.result, a.error) for a in shown] == [("refused", "already decided")]


async def test_a_retriage_is_pending_until_triage_decides(db: Database) -> None:
    case_id, events = one_case()
    await apply(db, events)
    actions = unpublished_actions(db)
    command_id = await actions.retriage(
        practitioner_key(),
        case_id,
        RetriageRequest(
            harm_types=["child_sexual_imagery"], urgency="critical", route="hotline", note="n"
        ),
    )
    assert [(a.action, a.result) for a in (await read(db, case_id)).retriages] == [
        ("retriage", "pending")
    ]
    assert queries.retriaged_event_id(command_id) == triage_retriaged_event_id(
        PractitionerCommandV1(
            command_id=command_id,
            case_id=case_id,
            action="retriage",
            actor="0123456789ab",
            issued_at=T0,
            note="n",
            retriage=RetriageOverride(
                harm_types=["child_sexual_imagery"], urgency="critical", route="hotline"
            ),
        )
    )
    decided = triaged(case_id, [], urgency="critical", route="hotline", revision=3).model_copy(
        update={"event_id": queries.retriaged_event_id(command_id)}
    )
    await apply(db, [decided])
    case = await read(db, case_id)
    assert [(a.action, a.result) for a in case.retriages] == [("retriage", "ok")]
    assert case.decision.revision == 3


@pytest.mark.parametrize(
    ("which", "request_", "status", "words"),
    [
        ("unknown", ActionRequest(action="advice_only", note="n"), 404, "no escalation"),
        ("decided", ActionRequest(action="advice_only", note="n"), 409, "state decided"),
        ("decided", ActionRequest(action="appeal", note="n"), 409, "no_violation"),
        ("waiting", ActionRequest(action="appeal", note="n"), 409, "state needs_manual"),
        ("waiting", ActionRequest(action="escalated_by_hand", note="n"), 422, "platform_ref"),
        ("waiting", ActionRequest(action="platform_decision", note="n"), 422, "decision"),
        (
            "waiting",
            ActionRequest(action="advice_only", note="n", decision="removed"),
            422,
            "only with platform_decision",
        ),
        (
            "waiting",
            ActionRequest(action="advice_only", note="n", case_id=uuid.uuid4()),
            404,
            "not linked",
        ),
    ],
)
async def test_actions_refused_with_the_reason(
    db: Database, which: str, request_: ActionRequest, status: int, words: str
) -> None:
    case_id, events = one_case()
    await apply(db, events)
    decided, waiting = (await read(db, case_id)).escalations
    target = {"unknown": uuid.uuid4(), "decided": decided.escalation_id}.get(
        which, waiting.escalation_id
    )
    with pytest.raises(ActionRefused) as refused:
        await unpublished_actions(db).act(practitioner_key(), target, request_)
    assert refused.value.status == status
    assert words in refused.value.detail
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM casework.commands") == 0
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


async def test_an_appeal_needs_a_no_violation_decision(db: Database) -> None:
    case_id = uuid.uuid4()
    u = url_of(case_id, "https://www.tiktok.com/@x", "tiktok")
    await apply(
        db,
        [
            opened(case_id, [u.url]),
            triaged(case_id, [u]),
            outcome(case_id, u, "decided", 5, decision="no_violation", platform_reference="T"),
        ],
    )
    esc = (await read(db, case_id)).escalations[0].escalation_id
    command_id = await unpublished_actions(db).act(
        practitioner_key(), esc, ActionRequest(action="appeal", note="it is plainly abuse")
    )
    assert (await read(db, case_id)).escalations[0].actions[0].command_id == command_id


async def test_followups_count_from_their_activity_after_the_breach(db: Database) -> None:
    """The breach's outcome says 0 follow-ups; each follow-up sent after it is an activity
    event, and the case counts those (a refused one is not a follow-up the platform has)."""
    case_id = uuid.uuid4()
    tiktok = url_of(case_id, "https://www.tiktok.com/@fake_head", "tiktok")
    esc = derive_id("esc", case_id, tiktok.url)
    await apply(
        db,
        [
            opened(case_id, [tiktok.url]),
            triaged(case_id, [tiktok], due_at=at(1)),
            outcome(case_id, tiktok, "submitted", 0.5, platform_reference="TT-9"),
            outcome(case_id, tiktok, "breached", 2, platform_reference="TT-9", followups=0),
            activity(esc, "followup", 2.1, 1, http_status=201, result="ok"),
            activity(esc, "followup", 3.1, 2, http_status=201, result="ok"),
            activity(esc, "followup", 4.1, 3, http_status=503, result="retryable"),
        ],
    )
    (escalation,) = (await read(db, case_id)).escalations
    assert escalation.state == "breached"
    assert escalation.overdue
    assert escalation.followups == 2
    assert [a.kind for a in escalation.attempts] == ["followup"] * 3
