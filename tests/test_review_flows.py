"""Casework flows as a practitioner and an outside system meet them, on the whole stack (real
broker, database, simulator, every service in its own process) with deadlines of seconds:
every call to a platform is read back with the HTTP status it was answered with, and the
practitioners' queue filters by why an escalation waits (the hotline route, an overdue
deadline, a manual channel), however its reason is worded."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.helpers import create_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_casework_e2e import case_when, publish
from tests.test_e2e import wait_until
from tests.test_reporter_erasure import erase, holding

pytestmark = pytest.mark.e2e

RENOTIFY_MAX = 2


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        database_url = await fresh_database(infra, "helpline_review_flows")
        ports = {
            f"HELPLINE_{s.upper()}_PORT": str(free_port())
            for s in ("intake", "triage", "escalator", "metrics", "simulator", "casework")
        }
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": database_url,
            "HELPLINE_SIMULATOR_LATENCY_MS": "5",
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "300",
            "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
            "HELPLINE_ESCALATION_RETRY_BASE_S": "0.2",
            "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
            "HELPLINE_DEADLINE_CRITICAL_S": "4",
            "HELPLINE_DEADLINE_HIGH_S": "4",
            "HELPLINE_DEADLINE_NORMAL_S": "4",
            "HELPLINE_RENOTIFY_INTERVAL_S": "1",
            "HELPLINE_RENOTIFY_MAX": str(RENOTIFY_MAX),
            "HELPLINE_DEADLINE_SCAN_INTERVAL_S": "0.3",
            "HELPLINE_LOG_JSON": "true",
            **ports,
        }
        settings = Settings(**{k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()})
        env["HELPLINE_PLATFORM_BASE_URL"] = f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}"
        s = await Stack.prepare(settings, log_dir=tmp_dir / "review-flows-logs", extra_env=env)
        try:
            await s.start_services()
            yield s
        finally:
            await asyncio.to_thread(s.stop)


async def simulate(stack: Stack, changes: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url("simulator"), timeout=10) as sim:
        if changes:
            assert (await sim.post("/_sim/config", json=changes)).status_code == 200
        return dict((await sim.get("/_sim/stats")).json())


def report(tag: str, description: str, urls: list[str]) -> dict[str, Any]:
    return {
        "schema_version": 2,
        "source": "review-flows",
        "report_id": f"rf-{tag}",
        "reporter": {"name": "Imogen Halloway", "email": f"imogen.{tag}@review.example"},
        "organisation": "Brookside Academy",
        "description": description,
        "urls": urls,
    }


async def test_every_platform_call_reads_back_with_its_http_status(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    # YouTube sits on its notices: it passes its deadline and is followed up.
    await simulate(stack, {"platforms": {"youtube": {"decision_delay_ms": 10**9}}})
    tiktok = f"https://www.tiktok.com/@fake{tag}/video/7301234567890123456"
    youtube = f"https://www.youtube.com/watch?v=rv{tag}xyz"
    await publish(
        stack,
        report(tag, "A fake account impersonates our head teacher.", [tiktok, youtube]),
    )
    key = await create_key(stack.settings.database_url or "", "read")

    def settled(case: dict[str, Any]) -> bool:
        by_url = {e["url"]: e for e in case["escalations"]}
        return (
            by_url.get(tiktok, {}).get("state") == "decided"
            and by_url.get(youtube, {}).get("followups") == RENOTIFY_MAX
            and [a["kind"] for a in by_url[youtube]["attempts"]].count("followup") == RENOTIFY_MAX
        )

    lookup = {"source": "review-flows", "report_id": f"rf-{tag}"}
    async with keyed_client(stack.url("casework"), key, timeout=10) as reader:
        case = await case_when(reader, lookup, settled)
    by_url = {e["url"]: e for e in case["escalations"]}
    assert by_url[youtube]["overdue"] is True
    for url in (tiktok, youtube):
        attempts = by_url[url]["attempts"]
        kinds = {a["kind"] for a in attempts}
        assert {"submit", "status"} <= kinds, attempts
        for attempt in attempts:
            if attempt["result"] == "ok":
                # The platform answered: the attempt says with what.
                assert isinstance(attempt["http_status"], int), attempt
                assert 200 <= attempt["http_status"] < 300, attempt
    followups = [a for a in by_url[youtube]["attempts"] if a["kind"] == "followup"]
    assert [a["http_status"] for a in followups if a["result"] == "ok"], followups
    activity = (await simulate(stack, {}))["platform_activity"]["youtube"]
    reference = by_url[youtube]["platform_reference"]
    assert (activity["notices"], activity["followups_per_reference"]) == (
        1,
        {reference: RENOTIFY_MAX},
    )


async def test_the_queue_filters_by_why_an_escalation_waits(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    imagery = f"https://www.instagram.com/p/Hot{tag}/"
    forum = f"https://forum.example.org/thread/{tag}"
    await publish(
        stack,
        report(
            f"hot-{tag}",
            "Sexual images of a pupil aged 13 are being shared: child sexual abuse material.",
            [imagery],
        ),
    )
    await publish(
        stack, report(f"man-{tag}", "A fake account impersonates our head teacher.", [forum])
    )
    read_key = await create_key(stack.settings.database_url or "", "read")
    practitioner = await create_key(stack.settings.database_url or "", "practitioner")

    def breached(url: str) -> Any:
        def ready(case: dict[str, Any]) -> bool:
            return [(e["url"], e["state"]) for e in case["escalations"]] == [(url, "breached")]

        return ready

    async with keyed_client(stack.url("casework"), read_key, timeout=10) as reader:
        # Both wait past their deadline: their reasons now speak of the deadline alone.
        hot = await case_when(
            reader, {"source": "review-flows", "report_id": f"rf-hot-{tag}"}, breached(imagery)
        )
        man = await case_when(
            reader, {"source": "review-flows", "report_id": f"rf-man-{tag}"}, breached(forum)
        )
        hot_id = hot["escalations"][0]["escalation_id"]
        man_id = man["escalations"][0]["escalation_id"]
        assert hot["escalations"][0]["route"] == "hotline"
        assert man["escalations"][0]["route"] == "manual"

        async def waiting(**params: str) -> list[str]:
            r = await reader.get("/v1/queue", params=params)
            assert r.status_code == 200, r.text
            return [q["escalation_id"] for q in r.json()]

        everything = await waiting()
        assert everything.index(hot_id) == 0  # the hotline heads the queue
        assert man_id in everything
        # It has waited for a person since it needed one, not since its deadline passed.
        items = {q["escalation_id"]: q for q in (await reader.get("/v1/queue")).json()}
        first = man["escalations"][0]["states"][0]
        assert first["state"] == "needs_manual"
        since = datetime.fromisoformat(items[man_id]["waiting_since"])
        assert since == datetime.fromisoformat(first["occurred_at"])
        assert man_id in await waiting(min_age_s="3")  # its deadline was 4 s
        for reason in ("hotline", "Hotline"):
            found = await waiting(reason=reason)
            assert hot_id in found, reason
            assert man_id not in found, reason
        found = await waiting(reason="manual")
        assert man_id in found
        assert hot_id not in found
        found = await waiting(reason="overdue")
        assert {hot_id, man_id} <= set(found)
        found = await waiting(reason="deadline")  # words of the reason still match
        assert {hot_id, man_id} <= set(found)
        assert hot_id not in await waiting(reason="hotline", platform="tiktok")
        assert await waiting(reason="hotline", platform="instagram") == [hot_id]

    async with keyed_client(stack.url("casework"), practitioner, timeout=10) as person:
        # Escalated by hand needs the platform's reference: blank is none.
        r = await person.post(
            f"/v1/escalations/{man_id}/actions",
            json={"action": "escalated_by_hand", "platform_reference": "   ", "note": "emailed"},
        )
        assert r.status_code == 422, r.text
        assert "platform_reference" in r.json()["detail"]
        r = await person.post(
            f"/v1/escalations/{man_id}/actions",
            json={"action": "escalated_by_hand", "platform_reference": " F-9 ", "note": "emailed"},
        )
        assert r.status_code == 202, r.text

        def by_hand(case: dict[str, Any]) -> bool:
            return [a["result"] for a in case["escalations"][0]["actions"]] == ["ok"]

        after = await case_when(
            person, {"source": "review-flows", "report_id": f"rf-man-{tag}"}, by_hand
        )
        esc = after["escalations"][0]
        assert (esc["state"], esc["platform_reference"]) == ("submitted", "F-9")


async def test_an_appeal_without_an_automated_route_is_made_and_recorded_by_hand(
    stack: Stack,
) -> None:
    tag = secrets.token_hex(4)
    forum = f"https://forum.example.org/thread/appeal-{tag}"
    await publish(
        stack, report(f"ap-{tag}", "A fake account impersonates our head teacher.", [forum])
    )
    db_url = stack.settings.database_url or ""
    practitioner = await create_key(db_url, "practitioner")
    lookup = {"source": "review-flows", "report_id": f"rf-ap-{tag}"}

    def state_is(*wanted: str) -> Any:
        def ready(case: dict[str, Any]) -> bool:
            esc = case["escalations"]
            return (
                len(esc) == 1
                and esc[0]["state"] in wanted
                and all(a["result"] != "pending" for a in esc[0]["actions"])
            )

        return ready

    async with (
        keyed_client(stack.url("casework"), practitioner, timeout=10) as person,
        keyed_client(stack.url("metrics"), practitioner, timeout=10) as metrics,
    ):
        case = await case_when(person, lookup, state_is("needs_manual", "breached"))
        eid = case["escalations"][0]["escalation_id"]
        before = (await metrics.get("/v1/totals")).json()

        async def act(body: dict[str, Any], *states: str) -> dict[str, Any]:
            r = await person.post(f"/v1/escalations/{eid}/actions", json=body)
            assert r.status_code == 202, r.text
            return (await case_when(person, lookup, state_is(*states)))["escalations"][0]

        # The forum's moderators said no, by email; the practitioner contests it.
        no = {"action": "platform_decision", "decision": "no_violation", "note": "they said no"}
        assert (await act(no, "decided"))["decision"] == "no_violation"
        appeal = {"action": "appeal", "note": "the account uses the head teacher's photos"}
        esc = await act(appeal, "appealed")
        appealed = esc["states"][-1]
        assert (appealed["state"], appealed["note"]) == ("appealed", appeal["note"])
        assert "appeal by hand" in (esc["reason"] or "")
        # It waits for a person to make the appeal and record the answer.
        queue = (await person.get("/v1/queue", params={"reason": "manual"})).json()
        assert eid in [q["escalation_id"] for q in queue]
        answer = {"action": "platform_decision", "decision": "removed", "note": "removed"}
        esc = await act(answer, "appeal_decided")
        assert esc["decision"] == "removed"
        assert [a["result"] for a in esc["actions"]] == ["ok", "ok", "ok"]
        assert eid not in [q["escalation_id"] for q in (await person.get("/v1/queue")).json()]

        async def counted() -> tuple[bool, Any]:
            after = (await metrics.get("/v1/totals")).json()
            kinds = ("appeals", "overturned", "manual_decisions")
            moved = tuple(after[k] - before[k] for k in kinds)
            # The content's decision stays one a practitioner recorded.
            return moved == (1, 1, 1), moved

        await wait_until(counted, 60, "the appeal and its overturn in the totals")


async def test_child_sexual_imagery_cannot_be_re_triaged_to_a_platform(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    url = f"https://www.tiktok.com/@csam{tag}/video/7301234567890120009"
    await publish(stack, report(f"cs-{tag}", "Someone is bullying a pupil in comments.", [url]))
    practitioner = await create_key(stack.settings.database_url or "", "practitioner")
    lookup = {"source": "review-flows", "report_id": f"rf-cs-{tag}"}
    async with keyed_client(stack.url("casework"), practitioner, timeout=10) as person:
        case = await case_when(person, lookup, lambda c: c["decision"] is not None)
        wrong = {
            "harm_types": ["child_sexual_imagery"],
            "urgency": "critical",
            "route": "platform",
            "note": "images of a pupil",
        }
        r = await person.post(f"/v1/cases/{case['case_id']}/retriage", json=wrong)
        assert r.status_code == 422, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "national hotline" in r.json()["detail"]
        # Nothing was sent for triage: the case has no re-triage.
        assert (await person.get(f"/v1/cases/{case['case_id']}")).json()["retriages"] == []
        r = await person.post(
            f"/v1/cases/{case['case_id']}/retriage", json=wrong | {"route": "hotline"}
        )
        assert r.status_code == 202, r.text


async def test_a_hotline_report_left_by_a_re_triage_is_said_to_stand(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    url = f"https://www.tiktok.com/@hl{tag}/video/7301234567890120011"
    await publish(
        stack,
        report(
            f"hl-{tag}",
            "Sexual images of a pupil aged 13 are being shared: child sexual abuse material.",
            [url],
        ),
    )
    practitioner = await create_key(stack.settings.database_url or "", "practitioner")
    lookup = {"source": "review-flows", "report_id": f"rf-hl-{tag}"}
    async with keyed_client(stack.url("casework"), practitioner, timeout=10) as person:

        def reported(case: dict[str, Any]) -> bool:
            found = [(e["route"], e["platform_reference"]) for e in case["escalations"]]
            return len(found) == 1 and found[0][0] == "hotline" and found[0][1] is not None

        case = await case_when(person, lookup, reported)
        change = {
            "harm_types": ["bullying_harassment"],
            "urgency": "high",
            "route": "platform",
            "note": "the images are of an adult; the comments bully the pupil",
        }
        r = await person.post(f"/v1/cases/{case['case_id']}/retriage", json=change)
        assert r.status_code == 202, r.text

        def moved(case: dict[str, Any]) -> bool:
            return {e["route"]: e["state"] for e in case["escalations"]}.get("hotline") == (
                "withdrawn"
            ) and any(e["route"] == "platform" for e in case["escalations"])

        after = await case_when(person, lookup, moved)
    hotline = next(e for e in after["escalations"] if e["route"] == "hotline")
    assert hotline["reason"] == "a report to the national hotline is not withdrawn; it stands"


async def test_a_reporter_is_erased_by_the_reference_they_quote(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    url = f"https://www.tiktok.com/@er{tag}/video/7301234567890120013"
    filed = report(f"er-{tag}", "A fake account impersonates our head teacher.", [url])
    filed["reporter"] = {"name": f"Peregrine Oddfellow{tag}", "email": f"p.odd.{tag}@home.example"}
    await publish(stack, filed)
    db_url = stack.settings.database_url or ""
    practitioner = await create_key(db_url, "practitioner")
    lookup = {"source": "review-flows", "report_id": f"rf-er-{tag}"}
    async with keyed_client(stack.url("casework"), practitioner, timeout=10) as person:
        case = await case_when(person, lookup, lambda c: c["reporter"]["email"] is not None)
        servers = stack.settings.kafka_bootstrap_servers
        code, out = await erase(db_url, "--yes", "HL-0000-0000", servers=servers)
        assert (code, "no case has the reference HL-0000-0000" in out) == (1, True)
        # As read out on the phone: lower case, no dashes.
        spoken = case["reference"].lower().replace("-", " ")
        code, out = await erase(db_url, "--yes", spoken, servers=servers)
        assert code == 0, out
        assert f"case {case['case_id']}" in out
        await case_when(person, lookup, lambda c: c["reporter"]["erased"] is True)
    conn = await asyncpg.connect(db_url)
    try:
        for secret in (filed["reporter"]["name"], filed["reporter"]["email"]):
            assert await holding(conn, secret) == [], secret
    finally:
        await conn.close()
