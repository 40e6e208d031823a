"""The casework service on the real broker and database, driven as its neighbours drive it:
events published onto its topics (redelivered and out of order), its HTTP API called with
API keys of each scope, practitioners' actions read back from the commands topic, and a
bad event found on its dead-letter topic without the reporter's details."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from helpline_casework.app import create_app
from helpline_shared import apikeys
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    PractitionerCommandV1,
    ReporterDetailsV1,
    case_reference,
    derive_id,
)
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    DEAD_LETTERS,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
    PRACTITIONER_COMMANDS,
)
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_casework_readmodel import activity, one_case, opened, outcome, triaged, url_of

pytestmark = pytest.mark.e2e

TOPIC_OF: dict[type[BaseModel], str] = {
    CaseOpenedV1: CASES_OPENED.name,
    CaseTriagedV1: CASES_TRIAGED.name,
    EscalationOutcomeV1: ESCALATION_OUTCOMES.name,
    EscalationActivityV1: ESCALATION_ACTIVITY.name,
    ReporterDetailsV1: CASE_REPORTERS.name,
}


@dataclass
class Casework:
    url: str
    servers: str
    db: Database
    keys: dict[str, str]  # scope -> plaintext key
    producer: AIOKafkaProducer

    async def publish(self, events: Sequence[Any]) -> None:
        for e in events:
            key = e.escalation_id if isinstance(e, EscalationActivityV1) else e.case_id
            await self.producer.send_and_wait(
                TOPIC_OF[type(e)], e.model_dump_json().encode(), key=str(key).encode()
            )

    def client(self, scope: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
async def casework(infra: Infra, tmp_dir: Path) -> AsyncIterator[Casework]:
    with dedicated_broker(infra, tmp_dir) as servers:
        url = await fresh_database(infra, "helpline_casework_svc")
        settings = Settings(kafka_bootstrap_servers=servers, database_url=url, log_json=True)
        db = Database(url)
        await db.open()
        try:
            await create_topics(settings)
            keys = {}
            async with db.pool.acquire() as conn:
                for scope in ("read", "practitioner", "submit", "admin"):
                    source = "casework-test" if scope == "submit" else None
                    _, keys[scope] = await apikeys.create(conn, [scope], source, scope, "tests")
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                async with served(create_app(settings)) as base:
                    yield Casework(base, servers, db, keys, producer)
            finally:
                await producer.stop()
        finally:
            await db.close()


async def eventually(check: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = await check()
        if ok:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last}")


async def case_when(
    cw: Casework, case_id: uuid.UUID, ready: Callable[[dict[str, Any]], bool], scope: str = "read"
) -> dict[str, Any]:
    async with cw.client(scope) as client:

        async def check() -> tuple[bool, Any]:
            r = await client.get(f"/v1/cases/{case_id}")
            if r.status_code == 200 and ready(r.json()):
                return True, r.json()
            return False, r.text[:300]

        case: dict[str, Any] = await eventually(check, f"case {case_id}")
        return case


async def fetch_case(cw: Casework, case_id: uuid.UUID, **params: Any) -> httpx.Response:
    async with cw.client(params.pop("scope", "read")) as client:
        return await client.get(f"/v1/cases/{case_id}", params=params)


async def test_the_case_is_built_from_published_events(casework: Casework) -> None:
    case_id, events = one_case()
    rng = random.Random(5)
    again = events + rng.sample(events, 5)  # some delivered twice
    rng.shuffle(again)
    await casework.publish(again)

    def complete(c: dict[str, Any]) -> bool:
        return len(c["decisions"]) == 2 and [e["state"] for e in c["escalations"]] == [
            "decided",
            "needs_manual",
        ]

    await case_when(casework, case_id, complete)
    case = (await fetch_case(casework, case_id)).json()
    assert case["reference"] == case_reference(case_id)
    assert case["reporter"] is None
    assert case["decision"]["revision"] == 2
    tiktok = case["escalations"][0]
    assert [s["state"] for s in tiktok["states"]] == ["submitted", "decided"]
    assert [a["kind"] for a in tiktok["attempts"]] == ["submit", "status"]
    async with casework.client("read") as client:
        by_id = await client.get(
            "/v1/cases", params={"source": "partner", "report_id": case["report_id"]}
        )
        assert by_id.json()["case_id"] == str(case_id)
        by_ref = await client.get("/v1/cases", params={"reference": case["reference"]})
        assert by_ref.json()["case_id"] == str(case_id)
        missing = await client.get("/v1/cases", params={"reference": "HL-ZZZZ-ZZZZ"})
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        half = await client.get("/v1/cases", params={"source": "partner"})
        assert half.status_code == 400
        listed = await client.get("/v1/cases", params={"state": "needs_manual"})
        assert str(case_id) in [c["case_id"] for c in listed.json()]
        bad = await client.get("/v1/cases/not-a-uuid")
        assert bad.status_code == 422


async def test_each_endpoint_answers_401_and_403_by_scope(casework: Casework) -> None:
    case_id, events = one_case()
    await casework.publish(events)
    await case_when(casework, case_id, lambda c: len(c["escalations"]) == 2)
    esc = (await fetch_case(casework, case_id)).json()["escalations"][1]["escalation_id"]
    action = {"action": "advice_only", "note": "advised the school"}
    retriage = {"harm_types": ["hate"], "urgency": "high", "route": "platform", "note": "n"}
    calls = [
        ("GET", f"/v1/cases/{case_id}", None, "read"),
        ("GET", "/v1/cases", None, "read"),
        ("GET", "/v1/queue", None, "read"),
        ("POST", f"/v1/escalations/{esc}/actions", action, "practitioner"),
        ("POST", f"/v1/cases/{case_id}/retriage", retriage, "practitioner"),
    ]
    for method, path, body, needed in calls:
        async with casework.client(None) as anonymous:
            r = await anonymous.request(method, path, json=body)
            assert r.status_code == 401, (path, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
            r = await anonymous.request(
                method, path, json=body, headers={"Authorization": "Bearer hk_0_nope"}
            )
            assert r.status_code == 401, (path, r.text)
        for scope in ("submit", "admin", "read"):
            if scope == needed:
                continue
            async with casework.client(scope) as client:
                r = await client.request(method, path, json=body)
                assert r.status_code == 403, (path, scope, r.text)
                assert r.json()["needed_scope"] == needed
    # The read calls answer the read scope, and a practitioner key reads too.
    for scope in ("read", "practitioner"):
        assert (await fetch_case(casework, case_id, scope=scope)).status_code == 200


async def test_contacts_only_with_the_practitioner_scope(casework: Casework) -> None:
    case_id, events = one_case()
    await casework.publish(events)
    await case_when(casework, case_id, lambda c: len(c["escalations"]) == 2)
    refused = await fetch_case(casework, case_id, contacts="true")
    assert refused.status_code == 403
    assert "a.teacher@school.example" not in refused.text
    assert refused.json()["needed_scope"] == "practitioner"
    read_only = await fetch_case(casework, case_id, scope="read")
    assert read_only.json()["reporter"] is None
    assert "a.teacher@school.example" not in read_only.text
    plain = await fetch_case(casework, case_id, scope="practitioner")
    assert plain.json()["reporter"]["email"] == "a.teacher@school.example"  # by default
    left_out = await fetch_case(casework, case_id, scope="practitioner", contacts="false")
    assert left_out.json()["reporter"] is None
    shown = await fetch_case(casework, case_id, scope="practitioner", contacts="true")
    assert shown.json()["reporter"]["email"] == "a.teacher@school.example"
    # Erased: the details are gone from the case and from casework's table.
    erased = ReporterDetailsV1(
        event_id=derive_id("erased", case_id),
        case_id=case_id,
        reporter=None,
        occurred_at=events[1].occurred_at.replace(year=2027),
    )
    await casework.publish([erased])

    async def gone() -> tuple[bool, Any]:
        r = await fetch_case(casework, case_id, scope="practitioner", contacts="true")
        return r.json()["reporter"]["erased"], r.json()["reporter"]

    await eventually(gone, "the erasure")
    async with casework.db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM casework.reporters WHERE case_id = $1", case_id)
    assert "a.teacher@school.example" not in str(dict(row))


async def test_the_queue_over_http(casework: Casework) -> None:
    tag = uuid.uuid4().hex[:8]
    made = []
    for urgency, route in (("normal", "manual"), ("critical", "manual"), ("normal", "hotline")):
        case_id = uuid.uuid4()
        u = url_of(case_id, f"https://example.org/{tag}/{len(made)}", "unknown", route)
        state = "submitted" if route == "hotline" else "needs_manual"
        reason = f"queue-{tag} {route}"
        await casework.publish(
            [
                opened(case_id, [u.url]),
                triaged(case_id, [u], urgency=urgency),
                outcome(case_id, u, state, len(made), reason=reason),
            ]
        )
        made.append(case_id)
    async with casework.client("read") as client:

        async def listed() -> tuple[bool, Any]:
            r = await client.get("/v1/queue", params={"reason": f"queue-{tag}"})
            items = r.json()
            return len(items) == 3, items

        items = await eventually(listed, "the queue")
        # Hotline first, then critical, then normal.
        assert [uuid.UUID(i["case_id"]) for i in items] == [made[2], made[1], made[0]]
        assert items[0]["route"] == "hotline"
        r = await client.get("/v1/queue", params={"reason": f"queue-{tag}", "urgency": "critical"})
        assert [uuid.UUID(i["case_id"]) for i in r.json()] == [made[1]]
        r = await client.get("/v1/queue", params={"min_age_s": -1})
        assert r.status_code == 422


async def test_an_action_is_published_as_a_command_and_shows_pending(casework: Casework) -> None:
    case_id, events = one_case()
    await casework.publish(events)
    case = await case_when(casework, case_id, lambda c: len(c["escalations"]) == 2)
    waiting = case["escalations"][1]  # needs_manual
    assert waiting["state"] == "needs_manual"
    async with casework.client("practitioner") as client:
        r = await client.post(
            f"/v1/escalations/{waiting['escalation_id']}/actions",
            json={
                "action": "escalated_by_hand",
                "note": "phoned the forum's moderators",
                "platform_reference": "FORUM-42",
            },
        )
    assert r.status_code == 202, r.text
    command_id = r.json()["command_id"]
    assert r.json()["status"] == "pending"
    assert r.json()["case_id"] == str(case_id)

    # At once in the case, as pending.
    shown = (await fetch_case(casework, case_id)).json()["escalations"][1]["actions"]
    assert [(a["command_id"], a["result"], a["platform_reference"]) for a in shown] == [
        (command_id, "pending", "FORUM-42")
    ]
    # On the commands topic, keyed by the case, as the escalator reads it.
    records = await read_topic(
        casework.servers,
        PRACTITIONER_COMMANDS.name,
        keep=lambda rec: rec.key == str(case_id).encode(),
        expected=1,
    )
    command = PractitionerCommandV1.model_validate_json(records[0].value)
    assert str(command.command_id) == command_id
    assert command.escalation_id == uuid.UUID(waiting["escalation_id"])
    assert (command.action, command.platform_reference) == ("escalated_by_hand", "FORUM-42")
    assert command.actor == casework.keys["practitioner"].split("_")[1]
    headers = dict(records[0].headers)
    assert headers["ce_source"] == b"urn:helpline:casework"
    assert headers["ce_id"] == command_id.encode()

    # The escalator reports it applied: the action is no longer pending.
    applied = activity(
        command.escalation_id,
        "practitioner",
        30,
        event_id=command.command_id,
        platform="unknown",
        result="ok",
        actor=command.actor,
        action="escalated_by_hand",
        note=command.note,
        command_id=command.command_id,
    )
    await casework.publish([applied])
    done = await case_when(
        casework, case_id, lambda c: c["escalations"][1]["actions"][0]["result"] == "ok"
    )
    assert len(done["escalations"][1]["actions"]) == 1


async def test_actions_are_refused_with_the_reason(casework: Casework) -> None:
    case_id, events = one_case()
    await casework.publish(events)
    case = await case_when(casework, case_id, lambda c: len(c["escalations"]) == 2)
    decided, waiting = (e["escalation_id"] for e in case["escalations"])

    async def act(escalation: str, body: dict[str, Any]) -> httpx.Response:
        async with casework.client("practitioner") as client:
            return await client.post(f"/v1/escalations/{escalation}/actions", json=body)

    note = {"note": "a note"}
    unknown = await act(str(uuid.uuid4()), {"action": "advice_only", **note})
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"
    closed = await act(decided, {"action": "advice_only", **note})
    assert closed.status_code == 409
    assert "decided" in closed.json()["detail"]
    appeal = await act(decided, {"action": "appeal", **note})  # removed, not no_violation
    assert appeal.status_code == 409
    assert "no_violation" in appeal.json()["detail"]
    no_ref = await act(waiting, {"action": "escalated_by_hand", **note})
    assert no_ref.status_code == 422
    assert "platform_reference" in no_ref.json()["detail"]
    no_decision = await act(waiting, {"action": "platform_decision", **note})
    assert no_decision.status_code == 422
    assert "decision" in no_decision.json()["detail"]
    no_note = await act(waiting, {"action": "advice_only"})
    assert no_note.status_code == 422
    blank = await act(waiting, {"action": "advice_only", "note": "   "})
    assert blank.status_code == 422
    bad_path = await act("not-a-uuid", {"action": "advice_only", **note})
    assert bad_path.status_code == 422
    async with casework.client("practitioner") as client:
        nobody = await client.post(
            f"/v1/cases/{uuid.uuid4()}/retriage",
            json={"harm_types": ["hate"], "urgency": "high", "route": "platform", "note": "n"},
        )
    assert nobody.status_code == 404
    # Nothing refused was stored or published.
    async with casework.db.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM casework.commands WHERE case_id = $1", case_id
            )
            == 0
        )


async def test_a_retriage_is_published_for_triage(casework: Casework) -> None:
    case_id, events = one_case()
    await casework.publish(events)
    await case_when(casework, case_id, lambda c: len(c["decisions"]) == 2)
    async with casework.client("practitioner") as client:
        r = await client.post(
            f"/v1/cases/{case_id}/retriage",
            json={
                "harm_types": ["child_sexual_imagery"],
                "urgency": "critical",
                "route": "hotline",
                "note": "the video shows a pupil",
            },
        )
    assert r.status_code == 202, r.text
    records = await read_topic(
        casework.servers,
        PRACTITIONER_COMMANDS.name,
        keep=lambda rec: rec.key == str(case_id).encode(),
        expected=1,
    )
    command = PractitionerCommandV1.model_validate_json(records[0].value)
    assert (command.action, command.escalation_id) == ("retriage", None)
    assert command.retriage is not None
    assert (command.retriage.route, command.retriage.urgency) == ("hotline", "critical")
    shown = (await fetch_case(casework, case_id)).json()["retriages"]
    assert [(a["action"], a["result"]) for a in shown] == [("retriage", "pending")]


async def test_a_bad_event_is_dead_lettered_without_the_reporter(casework: Casework) -> None:
    email = f"dsl.{uuid.uuid4().hex[:6]}@school.example"
    bad = {
        "schema_version": 1,
        "event_id": str(uuid.uuid4()),
        "case_id": "not-a-uuid",
        "reporter": {"name": "A. Teacher", "email": email},
        "occurred_at": "2026-11-20T09:00:00Z",
    }
    key = f"bad-{uuid.uuid4()}".encode()
    await casework.producer.send_and_wait(CASE_REPORTERS.name, json.dumps(bad).encode(), key=key)
    records = await read_topic(
        casework.servers, DEAD_LETTERS["casework"].name, keep=lambda r: r.key == key, expected=1
    )
    assert email.encode() not in records[0].value
    assert b"[redacted]" in records[0].value
    headers = {k: v.decode() for k, v in records[0].headers}
    assert "case_id" in headers["dlq_error"]  # the reason names the field
    assert email not in json.dumps(headers)
