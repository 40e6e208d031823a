"""A practitioner's re-triage on the real broker and PostgreSQL: the triage service consumes
`helpline.practitioner.commands`, publishes a superseding decision that follows the new
route, keeps both decisions, applies a redelivered command once, ignores the escalator's
actions and dead-letters what it cannot apply with the reason."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord
from faststream.kafka import KafkaBroker

from helpline_shared.consumer import DeadLetters
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    PractitionerCommandV1,
    RetriageOverride,
    Route,
    Urgency,
    derive_id,
)
from helpline_shared.kafka import OutgoingMessage, create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASES_OPENED,
    CASES_TRIAGED,
    DEAD_LETTERS,
    PRACTITIONER_COMMANDS,
)
from helpline_triage.app import create_app
from helpline_triage.override import RETRIAGED_TO_MANUAL
from helpline_triage.rules import RuleSet
from helpline_triage.usecase import Triage
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_metrics_provenance import publish_all_of
from tests.triage_support import (
    RECEIVED,
    case_opened,
    case_record,
    connected_broker,
    database_per_test,
)

TIKTOK = "https://www.tiktok.com/@fake_head/video/7301234567890123456"
UNKNOWN = "https://forum.example.org/thread/123"


def opened(urls: list[str], description: str = "Pupils are bullying a girl here.") -> CaseOpenedV1:
    return case_opened(description, urls)


def retriage(
    case_id: uuid.UUID,
    route: Route,
    urgency: Urgency = "critical",
    harm_types: list[Any] | None = None,
    actor: str = "key-practitioner-1",
) -> PractitionerCommandV1:
    return PractitionerCommandV1(
        command_id=uuid.uuid4(),
        case_id=case_id,
        action="retriage",
        actor=actor,
        issued_at=RECEIVED + timedelta(hours=1),
        note="The images are of a pupil: this is for the hotline.",
        retriage=RetriageOverride(
            harm_types=harm_types or ["bullying_harassment", "child_sexual_imagery"],
            urgency=urgency,
            route=route,
        ),
    )


def record(topic: str, value: bytes, key: uuid.UUID, offset: int) -> ConsumerRecord[bytes, bytes]:
    k = str(key).encode()
    return ConsumerRecord(topic, 0, offset, 0, 0, k, value, None, len(k), len(value), [])


def command_record(c: PractitionerCommandV1, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return record(PRACTITIONER_COMMANDS.name, c.model_dump_json().encode(), c.case_id, offset)


db = database_per_test("helpline_retriage")
broker = connected_broker()


def triage_with(db: Database, broker: KafkaBroker, **settings: Any) -> tuple[Triage, DeadLetters]:
    dead = DeadLetters("triage", max_ratio=0.9, window=10)
    triage = Triage(
        db, broker, dead, RuleSet.load(), settings=Settings(**settings) if settings else None
    )
    return triage, dead


async def decisions_of(infra: Infra, case_id: uuid.UUID, expected: int) -> list[CaseTriagedV1]:
    records = await read_topic(
        infra.bootstrap_servers,
        CASES_TRIAGED.name,
        keep=lambda r: r.key == str(case_id).encode(),
        expected=expected,
    )
    return [CaseTriagedV1.model_validate_json(r.value) for r in records]


async def test_an_override_supersedes_the_decision_and_both_are_kept(
    db: Database, broker: KafkaBroker, infra: Infra
) -> None:
    triage, dead = triage_with(db, broker, deadline_critical_s=5)
    case = opened([TIKTOK, UNKNOWN])
    await triage.process([case_record(case)])
    command = retriage(case.case_id, "hotline")
    await triage.process([command_record(command)])

    first, second = await decisions_of(infra, case.case_id, 2)
    assert (first.revision, first.route) == (1, "platform")
    assert second.event_id == derive_id("case.retriaged", command.command_id)
    assert second.revision == 2
    assert second.supersedes == first.event_id
    assert second.overridden_by == "key-practitioner-1"
    assert second.override_note == command.note
    assert (second.route, second.urgency) == ("hotline", "critical")
    # Most severe first, whatever order the practitioner gave them in.
    assert second.harm_types == ["child_sexual_imagery", "bullying_harassment"]
    assert second.lead_harm_type == "child_sexual_imagery"
    assert [u.route for u in second.urls] == ["hotline", "hotline"]
    assert [u.url_id for u in second.urls] == [u.url_id for u in first.urls]
    assert {u.dsa_category for u in second.urls} == {
        RuleSet.load().dsa_category("child_sexual_imagery")
    }
    # What the first decision was made from stays with the new one.
    assert second.rules_fired == first.rules_fired
    assert second.matches == first.matches
    assert second.rules_version == first.rules_version
    assert second.received_at == first.received_at
    assert second.decision_due_at == RECEIVED + timedelta(seconds=5)

    rows = await db.pool.fetch(
        "SELECT * FROM triage.decisions WHERE case_id = $1 ORDER BY revision", case.case_id
    )
    assert [r["revision"] for r in rows] == [1, 2]
    assert [r["event_id"] for r in rows] == [first.event_id, second.event_id]
    assert rows[1]["supersedes"] == first.event_id
    assert rows[1]["overridden_by"] == "key-practitioner-1"
    assert rows[1]["override_note"] == command.note
    assert rows[1]["deadline_source"] == "settings HELPLINE_DEADLINE_CRITICAL_S"
    assert (rows[1]["urgency"], rows[1]["route"]) == ("critical", "hotline")
    assert await dead.flush(broker) == 0


async def test_a_redelivered_command_republishes_the_same_decision(
    db: Database, broker: KafkaBroker, infra: Infra
) -> None:
    triage, _ = triage_with(db, broker)
    case = opened([TIKTOK])
    command = retriage(case.case_id, "manual", "high", ["impersonation"])
    # The case and its command in one batch, then the command again twice.
    await triage.process([case_record(case), command_record(command)])
    await triage.process([command_record(command, 1)])
    await triage_with(db, broker)[0].process([command_record(command, 2)])

    events = await decisions_of(infra, case.case_id, 4)
    records = await read_topic(
        infra.bootstrap_servers,
        CASES_TRIAGED.name,
        keep=lambda r: r.key == str(case.case_id).encode(),
        expected=4,
    )
    assert [e.revision for e in events] == [1, 2, 2, 2]
    assert len({r.value for r in records[1:]}) == 1  # byte for byte the same decision
    assert (
        await db.pool.fetchval(
            "SELECT count(*) FROM triage.decisions WHERE case_id = $1", case.case_id
        )
        == 2
    )
    assert [(u.route, u.reason) for u in events[1].urls] == [("manual", RETRIAGED_TO_MANUAL)]


async def test_each_override_builds_on_the_latest(
    db: Database, broker: KafkaBroker, infra: Infra
) -> None:
    triage, _ = triage_with(db, broker)
    case = opened([TIKTOK, UNKNOWN, "not a url at all"])
    await triage.process([case_record(case)])
    to_hotline = retriage(case.case_id, "hotline")
    back = retriage(case.case_id, "platform", "normal", ["bullying_harassment"], actor="key-2")
    await triage.process([command_record(to_hotline), command_record(back, 1)])

    first, hotline, platform = await decisions_of(infra, case.case_id, 3)
    assert (hotline.revision, platform.revision) == (2, 3)
    assert platform.supersedes == hotline.event_id
    assert platform.overridden_by == "key-2"
    routes = {u.url: (u.route, u.reason is None) for u in platform.urls}
    # Back to platforms: the known platform's URL goes to it; the unknown platform's waits
    # for a person with the reason; an unreadable one waits for a person on every route.
    assert routes[TIKTOK] == ("platform", True)
    assert routes[UNKNOWN] == ("manual", False)
    assert routes["not a url at all"] == ("manual", False)
    assert {u.url: u.route for u in hotline.urls}["not a url at all"] == "manual"
    assert platform.decision_due_at == RECEIVED + RuleSet.load().deadline("normal")
    assert [u.reason_code for u in platform.urls if u.url == TIKTOK] == [
        RuleSet.load().reason_code("bullying_harassment", "tiktok")
    ]
    history = await db.pool.fetch(
        "SELECT revision, supersedes, event FROM triage.decisions WHERE case_id = $1"
        " ORDER BY revision",
        case.case_id,
    )
    assert [CaseTriagedV1.model_validate_json(r["event"]) for r in history] == [
        first,
        hotline,
        platform,
    ]


async def test_unknown_cases_and_bad_commands_are_dead_lettered_and_other_actions_ignored(
    db: Database, broker: KafkaBroker, infra: Infra
) -> None:
    triage, dead = triage_with(db, broker)
    case = opened([TIKTOK])
    await triage.process([case_record(case)])
    unknown = retriage(uuid.uuid4(), "hotline")
    escalator_action = PractitionerCommandV1(
        command_id=uuid.uuid4(),
        case_id=case.case_id,
        escalation_id=uuid.uuid4(),
        action="advice_only",
        actor="key-1",
        issued_at=RECEIVED,
        note="Advice given.",
    )
    bad = retriage(case.case_id, "hotline").model_dump(mode="json")
    bad["retriage"]["harm_types"] = []
    invalid_escalator_action = escalator_action.model_dump(mode="json") | {"decision": "x"}
    records = [
        command_record(unknown, 1),
        command_record(escalator_action, 2),
        record(PRACTITIONER_COMMANDS.name, json.dumps(bad).encode(), case.case_id, 3),
        record(PRACTITIONER_COMMANDS.name, b"{not json", case.case_id, 4),
        record(
            PRACTITIONER_COMMANDS.name,
            json.dumps(invalid_escalator_action).encode(),
            case.case_id,
            5,
        ),
    ]
    await triage.process(records)
    assert await dead.flush(broker) == 3

    keys = {str(unknown.case_id).encode(), str(case.case_id).encode()}
    letters = await read_topic(
        infra.bootstrap_servers,
        DEAD_LETTERS["triage"].name,
        keep=lambda r: r.key in keys,
        expected=3,
    )
    errors = {
        h["dlq_source_offset"].decode(): h["dlq_error"].decode()
        for h in (dict(m.headers) for m in letters)
    }
    assert set(errors) == {"1", "3", "4"}  # the escalator's actions are not triage's
    assert f"no decision for case {unknown.case_id}" in errors["1"]
    assert "retriage.harm_types" in errors["3"]
    assert "invalid practitioner.command" in errors["4"]
    assert await db.pool.fetchval("SELECT count(*) FROM triage.decisions") == 1


async def test_the_service_applies_a_command_from_the_topic(infra: Infra, tmp_path: Path) -> None:
    with dedicated_broker(infra, tmp_path) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_retriage_served"),
            deadline_high_s=3,
            deadline_critical_s=2,
        )
        await create_topics(settings)
        case = opened([TIKTOK], "A fake account is impersonating our head teacher.")
        command = retriage(case.case_id, "hotline", "critical")
        async with served(create_app(settings)):
            await publish_all_of(
                settings,
                [
                    OutgoingMessage(
                        CASES_OPENED.name,
                        case.model_dump_json().encode(),
                        str(case.case_id).encode(),
                    )
                ],
            )
            [first] = [
                CaseTriagedV1.model_validate_json(r.value)
                for r in await read_topic(servers, CASES_TRIAGED.name, expected=1)
            ]
            message = OutgoingMessage(
                PRACTITIONER_COMMANDS.name,
                command.model_dump_json().encode(),
                str(case.case_id).encode(),
            )
            await publish_all_of(settings, [message, message])  # and redelivered
            got = [
                CaseTriagedV1.model_validate_json(r.value)
                for r in await read_topic(servers, CASES_TRIAGED.name, expected=3)
            ]
        assert got[0] == first
        assert first.urgency == "high"
        assert first.decision_due_at == RECEIVED + timedelta(seconds=3)
        assert {e.event_id for e in got[1:]} == {derive_id("case.retriaged", command.command_id)}
        assert got[1].decision_due_at == RECEIVED + timedelta(seconds=2)
        assert got[1].supersedes == first.event_id
        assert [u.route for u in got[1].urls] == ["hotline"]


async def test_child_sexual_imagery_is_never_re_triaged_to_the_platform_route(
    db: Database, broker: KafkaBroker, infra: Infra
) -> None:
    """A re-triage naming child sexual imagery on the platform route would send it on the
    platform's notice channel: dead-lettered with the reason, no decision made."""
    triage, dead = triage_with(db, broker)
    case = opened([TIKTOK])
    await triage.process([case_record(case)])
    decided = await db.pool.fetchval("SELECT count(*) FROM triage.decisions")
    wrong = retriage(case.case_id, "platform", harm_types=["child_sexual_imagery"])
    await triage.process([command_record(wrong, 7)])
    assert await dead.flush(broker) == 1
    (letter,) = await read_topic(
        infra.bootstrap_servers,
        DEAD_LETTERS["triage"].name,
        keep=lambda r: r.key == str(case.case_id).encode(),
        expected=1,
    )
    error = dict(letter.headers)["dlq_error"].decode()
    assert "never to a platform's notice channel" in error
    assert await db.pool.fetchval("SELECT count(*) FROM triage.decisions") == decided
    # The hotline route (or a person) is applied as ever.
    right = retriage(case.case_id, "hotline", harm_types=["child_sexual_imagery"])
    await triage.process([command_record(right, 8)])
    assert await db.pool.fetchval("SELECT count(*) FROM triage.decisions") == decided + 1
