"""End to end on the whole stack (real broker, database, simulator, every service in its own
process): a report published by another system goes through intake, triage and the
escalator, and casework's API reads the whole case back; a practitioner's action and a
re-triage made there come back applied by the escalator and by triage."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from helpline_cli.stack import Stack
from helpline_shared.events import case_reference
from helpline_shared.topics import REPORTS_SUBMITTED
from tests.helpers import create_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import _stack, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir / "casework-e2e"):
            yield s


async def publish(stack: Stack, report: dict[str, Any]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(
            REPORTS_SUBMITTED.name, json.dumps(report).encode(), key=report["report_id"].encode()
        )
    finally:
        await producer.stop()


async def case_when(client: httpx.AsyncClient, params: dict[str, str], ready: Any) -> Any:
    found: dict[str, Any] = {}

    async def check() -> tuple[bool, Any]:
        r = await client.get("/v1/cases", params=params)
        if r.status_code == 200 and ready(r.json()):
            found.update(r.json())
            return True, None
        return False, r.text[:500]

    await wait_until(check, 90, f"the case {params}")
    return found


async def test_a_case_reads_back_whole_and_actions_come_back_applied(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    email = f"dsl.{tag}@casework-school.example"
    tiktok = f"https://www.tiktok.com/@fake_head{tag}/video/7301234567890123456"
    forum = f"https://forum.example.org/thread/{tag}"
    report = {
        "schema_version": 2,
        "source": "casework-e2e",
        "report_id": f"cw-{tag}",
        "reporter": {"name": "Ada Marsh", "email": email, "role": "safeguarding lead"},
        "organisation": "Oakfield Primary School",
        "description": "A fake account is impersonating our head teacher.",
        "urls": [tiktok, forum],
        "child_affected": False,
    }
    await publish(stack, report)
    db_url = stack.settings.database_url or ""
    read_key = await create_key(db_url, "read")
    practitioner_key = await create_key(db_url, "practitioner")
    lookup = {"source": "casework-e2e", "report_id": f"cw-{tag}"}

    def settled(case: dict[str, Any]) -> bool:
        states = {e["url"]: e["state"] for e in case["escalations"]}
        return states == {tiktok: "decided", forum: "needs_manual"}

    async with keyed_client(stack.url("casework"), read_key, timeout=10) as reader:
        case = await case_when(reader, lookup, settled)
        # The report, without the reporter.
        assert case["reference"] == case_reference(uuid.UUID(case["case_id"]))
        assert (case["organisation"], case["urls"]) == ("Oakfield Primary School", [tiktok, forum])
        assert case["child_affected"] is False
        assert case["reporter"] is None
        assert email not in json.dumps(case)
        # Triage's decision with the rules that fired and the rules version.
        decision = case["decision"]
        assert decision["revision"] == 1
        assert "impersonation" in decision["harm_types"]
        assert decision["rules_fired"]
        assert decision["rules_version"]
        assert decision["decision_due_at"] is not None
        assert case["decisions"] == [decision]
        # Each URL's escalation: platform, state, reference, decision, deadline, attempts.
        by_url = {e["url"]: e for e in case["escalations"]}
        platform = by_url[tiktok]
        assert platform["platform"] == "tiktok"
        assert platform["platform_reference"]
        assert platform["decision"] is not None
        assert platform["due_at"] is not None
        assert "submit" in [a["kind"] for a in platform["attempts"]]
        submit = next(a for a in platform["attempts"] if a["kind"] == "submit")
        assert submit["result"] in ("ok", "retryable", "lost")
        assert [s["state"] for s in platform["states"]][-1] == "decided"
        manual = by_url[forum]
        assert (manual["platform"], manual["route"]) == ("unknown", "manual")
        # The person's queue holds the manual one.
        queue = (await reader.get("/v1/queue", params={"platform": "unknown"})).json()
        assert manual["escalation_id"] in [q["escalation_id"] for q in queue]
        # Contacts: refused to a read key.
        refused = await reader.get(f"/v1/cases/{case['case_id']}", params={"contacts": "true"})
        assert refused.status_code == 403

    async with keyed_client(stack.url("casework"), practitioner_key, timeout=10) as person:
        shown = await person.get(f"/v1/cases/{case['case_id']}", params={"contacts": "true"})
        assert shown.json()["reporter"]["email"] == email
        # A practitioner closes the manual one as advice only ...
        r = await person.post(
            f"/v1/escalations/{manual['escalation_id']}/actions",
            json={"action": "advice_only", "note": "advised the school to report it directly"},
        )
        assert r.status_code == 202, r.text
        command_id = r.json()["command_id"]
        # ... and overrides the triage decision.
        r = await person.post(
            f"/v1/cases/{case['case_id']}/retriage",
            json={
                "harm_types": ["impersonation", "bullying_harassment"],
                "urgency": "high",
                "route": "platform",
                "note": "the account also harasses the head teacher",
            },
        )
        assert r.status_code == 202, r.text

        def applied(c: dict[str, Any]) -> bool:
            esc = next(e for e in c["escalations"] if e["url"] == forum)
            done = [a["result"] for a in c["retriages"]] == ["ok"]
            return esc["state"] == "closed" and len(c["decisions"]) == 2 and done

        after = await case_when(person, lookup, applied)
        esc = next(e for e in after["escalations"] if e["url"] == forum)
        action = next(a for a in esc["actions"] if a["command_id"] == command_id)
        assert (action["action"], action["result"]) == ("advice_only", "ok")
        assert action["actor"] == practitioner_key.split("_")[1]
        closed = esc["states"][-1]
        assert (closed["state"], closed["actor"]) == ("closed", action["actor"])
        assert closed["note"] == "advised the school to report it directly"
        first, second = after["decisions"]
        assert (first["revision"], second["revision"]) == (1, 2)
        assert after["decision"] == second
        assert (second["urgency"], second["overridden_by"]) == ("high", action["actor"])
        assert second["override_note"] == "the account also harasses the head teacher"
        # No longer waiting for a person.
        queue = (await person.get("/v1/queue", params={"platform": "unknown"})).json()
        assert manual["escalation_id"] not in [q["escalation_id"] for q in queue]
