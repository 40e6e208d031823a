"""End to end on the real broker and database: reports published by an outside system
(a plain aiokafka producer) reach recorded platform outcomes and exact totals."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer

from helpline_cli.infra import free_port
from helpline_cli.stack import Stack
from helpline_intake.redaction import redact
from helpline_shared.events import ReportRejectedV1, case_reference, derive_id
from helpline_shared.settings import Settings
from helpline_shared.topics import ALL_TOPICS, CASE_REPORTERS, REPORTS_REJECTED, REPORTS_SUBMITTED
from tests.conftest import fresh_database
from tests.helpers import create_key, every_scope_key, keyed_client, read_topic
from tests.infra import Infra, dedicated_broker
from tests.test_report_form import form_tokens

pytestmark = pytest.mark.e2e

VALID = 1000
DUPLICATES = 120
CONFLICTS = 7
HOSTS = [
    ("https://www.tiktok.com/@acct{i}/video/{n}", 76),
    ("https://www.instagram.com/p/{n}/", 8),
    ("https://m.facebook.com/profile.php?id={n}", 5),
    ("https://youtu.be/{n}", 4),
    ("https://twitter.com/acct{i}/status/{n}?s=20", 3),
    ("https://www.snapchat.com/add/acct{i}", 2),
    ("https://forum.example.org/thread/{n}", 2),
]
DESCRIPTIONS = [
    "Pupils are bullying a teacher in these videos and the comments are abusive.",
    "A fake account is impersonating our head teacher.",
    "Posts spreading false claims about a member of staff, damaging her reputation.",
    "Someone is using our school logo on a parody account.",
    "Photos of pupils shared without consent with their home address.",
    "A student posted a threat to bring a weapon to school.",
]


def make_report(i: int, rng: random.Random) -> dict[str, Any]:
    urls = []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        template = rng.choices([h for h, _ in HOSTS], weights=[w for _, w in HOSTS])[0]
        urls.append(template.format(i=i, n=rng.randrange(10**12)))
    return {
        "schema_version": 1,
        "source": "e2e-partner",
        "report_id": f"e2e-{i:05d}",
        "reporter": {"name": f"Reporter {i}", "email": f"r{i}@school.example"},
        "organisation": "Test Academy",
        "description": rng.choice(DESCRIPTIONS),
        "urls": urls,
    }


MALFORMED: list[bytes] = [
    b"",
    b"not json at all",
    b'{"schema_version": 1',
    b"[1, 2, 3]",
    json.dumps({"schema_version": 2, "source": "x", "report_id": "y"}).encode(),
    json.dumps(
        {
            "schema_version": 1,
            "source": "x",
            "report_id": "no-urls",
            "reporter": {"name": "A", "email": "a@b.example"},
            "description": "d",
            "urls": [],
        }
    ).encode(),
    json.dumps(
        {
            "schema_version": 1,
            "source": "x",
            "report_id": "bad-email",
            "reporter": {"name": "A", "email": "not-an-email"},
            "description": "d",
            "urls": ["https://tiktok.com/@a"],
        }
    ).encode(),
    json.dumps(
        {
            "schema_version": 1,
            "source": "x",
            "report_id": "bad-url",
            "reporter": {"name": "A", "email": "a@b.example"},
            "description": "d",
            "urls": ["javascript:alert(1)"],
        }
    ).encode(),
    json.dumps(
        {
            "schema_version": 1,
            "source": "x",
            "report_id": "extra",
            "reporter": {"name": "A", "email": "a@b.example"},
            "surprise": True,
            "description": "d",
            "urls": ["https://tiktok.com/@a"],
        }
    ).encode(),
    '{"schema_version": 1, "s\u00e9": \xff}'.encode("latin-1"),
]


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir):
            yield s


async def _stack(infra: Infra, servers: str, tmp_dir: Path) -> AsyncIterator[Stack]:
    db_name_url = await fresh_database(infra, "helpline_e2e")
    ports = {
        f"HELPLINE_{s.upper()}_PORT": str(free_port())
        for s in ("intake", "triage", "escalator", "metrics", "simulator")
    }
    env = {
        "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
        "HELPLINE_DATABASE_URL": db_name_url,
        "HELPLINE_SIMULATOR_LATENCY_MS": "5",
        "HELPLINE_SIMULATOR_RATE_LIMIT_RATE": "0.03",
        "HELPLINE_SIMULATOR_ERROR_RATE": "0.03",
        "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "300",
        "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
        "HELPLINE_ESCALATION_RETRY_BASE_S": "0.2",
        "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
        "HELPLINE_LOG_JSON": "true",
        **ports,
    }
    settings = Settings(**{k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()})
    env["HELPLINE_PLATFORM_BASE_URL"] = f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}"
    s = await Stack.prepare(settings, log_dir=tmp_dir / "e2e-logs", extra_env=env)
    try:
        await s.start_services()
        yield s
    finally:
        await asyncio.to_thread(s.stop)


async def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        ok, last = await check()
        if ok:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last seen: {last}")


async def test_reports_reach_outcomes_and_exact_totals(stack: Stack) -> None:
    rng = random.Random(7)
    reports = [make_report(i, rng) for i in range(VALID)]
    messages: list[tuple[bytes | None, bytes]] = [
        (r["report_id"].encode(), json.dumps(r).encode()) for r in reports
    ]
    for r in rng.sample(reports, DUPLICATES):  # the same report again, written differently
        messages.append((r["report_id"].encode(), json.dumps(r, indent=1).encode()))
    for r in rng.sample(reports, CONFLICTS):  # other content under a stored id: refused
        again = dict(r, description=r["description"] + " (changed)")
        messages.append((r["report_id"].encode(), json.dumps(again).encode()))
    for n, raw in enumerate(MALFORMED):
        messages.append((f"malformed-{n}".encode(), raw))
    rng.shuffle(messages)

    servers = stack.settings.kafka_bootstrap_servers
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(REPORTS_SUBMITTED.name, v, key=k) for k, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()

    key = await every_scope_key(stack.settings.database_url or "")
    db = await asyncpg.connect(stack.settings.database_url)
    try:

        async def pipeline_done() -> tuple[bool, Any]:
            cases = await db.fetchval("SELECT count(*) FROM intake.reports")
            open_ = await db.fetchval(
                """SELECT count(*) FROM escalator.escalations
                   WHERE state NOT IN ('decided', 'failed', 'needs_manual')"""
            )
            total = await db.fetchval("SELECT count(*) FROM escalator.escalations")
            async with keyed_client(key=key) as client:
                t = (await client.get(f"{stack.url('metrics')}/v1/totals")).json()
            terminal = sum(
                t["escalations"]["by_state"].get(s, 0)
                for s in ("decided", "failed", "needs_manual")
            )
            done = (
                cases == VALID
                and open_ == 0
                and total > 0
                and t["cases"] == VALID
                and terminal == total
                and t["reports_rejected"] == len(MALFORMED) + CONFLICTS
            )
            return done, {"cases": cases, "open": open_, "total": total, "metrics": t}

        await wait_until(pipeline_done, 240, "every report escalated and counted")

        # Every valid report has exactly one case; duplicates opened none and were counted.
        rows = await db.fetch("SELECT report_id, duplicates FROM intake.reports")
        assert sorted(r["report_id"] for r in rows) == sorted(r["report_id"] for r in reports)
        assert sum(r["duplicates"] for r in rows) == DUPLICATES

        # Every URL has an escalation with a recorded outcome and a finished attempt trail.
        expected_urls = 0
        for r in reports:
            expected_urls += len(set(r["urls"]))
        escalations = await db.fetch("SELECT * FROM escalator.escalations")
        assert len(escalations) <= expected_urls
        assert len(escalations) >= VALID
        assert all(e["state"] in ("decided", "failed", "needs_manual") for e in escalations)
        decided = [e for e in escalations if e["state"] == "decided"]
        assert all(e["decision"] and e["platform_reference"] for e in decided)
        unfinished = await db.fetchval(
            "SELECT count(*) FROM escalator.attempts WHERE result IS NULL"
        )
        assert unfinished == 0
        manual = [e for e in escalations if e["platform"] == "unknown"]
        assert manual
        assert all(e["state"] == "needs_manual" for e in manual)

        # No URL was submitted twice: the simulator saw each client reference once.
        async with httpx.AsyncClient() as client:
            sim = (await client.get(f"{stack.url('simulator')}/_sim/stats")).json()
        platform_routed = [e for e in escalations if e["route"] == "platform"]
        submitted = [e for e in platform_routed if e["platform_reference"]]
        assert sim["repeated_client_references"] == {}
        assert sim["submissions"] == len(submitted)
        assert sim["distinct_client_references"] == len(submitted)

        # Every malformed message is on helpline.reports.rejected with a reason.
        rejected = await read_topic(
            servers, REPORTS_REJECTED.name, expected=len(MALFORMED) + CONFLICTS
        )
        by_key = {}
        for record in rejected:
            event = ReportRejectedV1.model_validate_json(record.value)
            by_key[event.key] = event
        for n, raw in enumerate(MALFORMED):
            event = by_key[f"malformed-{n}"]
            assert event.reasons
            assert all(r.message and r.type for r in event.reasons)
            # Published with the reporter's fields redacted; not JSON: withheld.
            assert base64.b64decode(event.original_base64) == (redact(raw) or b"")
        conflicts = [e for e in by_key.values() if e.reasons[0].type == "conflict"]
        assert len(conflicts) == CONFLICTS

        # The metrics totals equal counts taken directly from the database.
        async with keyed_client(key=key) as client:
            totals = (await client.get(f"{stack.url('metrics')}/v1/totals")).json()
        assert totals["cases"] == await db.fetchval("SELECT count(*) FROM intake.reports")
        # URL reports (each URL of each case) and escalations (distinct content) apart.
        links = await db.fetch(
            """SELECT l.case_id, l.harm_types, e.platform, e.state
               FROM escalator.escalation_cases l JOIN escalator.escalations e
               USING (escalation_id)"""
        )
        assert totals["urls"] == totals["url_reports"]["total"] == len(links)
        assert totals["url_reports"]["by_state"] == dict(Counter(r["state"] for r in links))
        assert totals["escalations"]["total"] == len(escalations)
        assert totals["urls_escalated"] == await db.fetchval(
            """SELECT count(DISTINCT escalation_id) FROM escalator.escalation_states
               WHERE state IN ('submitted', 'decided')"""
        )
        assert totals["escalations"]["by_state"] == dict(Counter(e["state"] for e in escalations))
        assert totals["decisions"] == dict(Counter(e["decision"] for e in decided))
        takedowns = sum(e["decision"] in ("removed", "disabled", "already_gone") for e in decided)
        assert totals["takedowns"] == takedowns
        assert totals["takedown_rate"] == round(takedowns / len(decided), 4)
        per_platform = Counter(p for _, p in {(r["case_id"], r["platform"]) for r in links})
        assert {p: v["cases"] for p, v in totals["cases_by_platform"].items()} == per_platform
        harm = Counter(
            h for case in {(r["case_id"], tuple(r["harm_types"])) for r in links} for h in case[1]
        )
        assert totals["cases_by_harm_type"] == dict(harm)
        assert totals["reports_rejected"] == await db.fetchval(
            "SELECT count(*) FROM intake.rejections"
        )
    finally:
        await db.close()


# The HTTP paths, on the same running system (after the totals test above, which counts).


async def case_stored(stack: Stack, case_id: str) -> None:
    db = await asyncpg.connect(stack.settings.database_url)
    try:

        async def stored() -> tuple[bool, Any]:
            n = await db.fetchval(
                "SELECT count(*) FROM intake.reports WHERE case_id = $1::uuid", case_id
            )
            return n == 1, n

        await wait_until(stored, 30, f"case {case_id} stored")
    finally:
        await db.close()


async def test_http_api_accepts_and_rejects(stack: Stack) -> None:
    report = make_report(99_001, random.Random(1)) | {"source": "http-client"}
    key = await create_key(stack.settings.database_url or "", "submit", source="http-client")
    async with keyed_client(stack.url("intake"), key) as client:
        ok = await client.post("/v1/reports", json=report)
        assert ok.status_code == 202
        case_id = ok.json()["case_id"]
        again = await client.post("/v1/reports", json=report)
        assert again.json()["case_id"] == case_id
        bad = await client.post("/v1/reports", json={**report, "urls": ["ftp://x"]})
        assert bad.status_code == 422
        assert [e["loc"] for e in bad.json()["errors"]] == ["urls.0"]
        huge = await client.post(
            "/v1/reports", content=b"x" * 600_000, headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413
    await case_stored(stack, case_id)


async def test_web_form_submits_once(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.url("intake")) as client:
        page = await client.get("/report")
        assert page.status_code == 200
        assert 'name="report_id"' in page.text
        form = {
            "report_id": "form-token-1",
            "name": "A Teacher",
            "email": "a@school.example",
            "description": "A fake account is impersonating our head teacher.",
            "urls": "https://www.tiktok.com/@fake/video/1\nhttps://www.instagram.com/fake/",
            "issue_types": "impersonation",
            **await form_tokens(client),
        }
        case_id = derive_id("case", "web-form", "form-token-1")
        first = await client.post("/report", data=form)
        second = await client.post("/report", data=form)  # pressed twice
        assert first.status_code == second.status_code == 202
        assert case_reference(case_id) in first.text
        invalid = await client.post("/report", data={**form, "email": "nope"})
        assert invalid.status_code == 422
        assert "Your email address: " in invalid.text
    await case_stored(stack, str(case_id))


async def test_every_service_serves_prometheus_metrics(stack: Stack) -> None:
    async with httpx.AsyncClient() as client:
        for service in ("intake", "triage", "escalator", "metrics"):
            ready = await client.get(f"{stack.url(service)}/health/ready")
            assert ready.status_code == 200, ready.text
            text = (await client.get(f"{stack.url(service)}/metrics")).text
            assert "faststream_received_messages_total" in text, service
            assert f'helpline_dead_letters_total{{service="{service}"}}' in text
        totals = (await client.get(f"{stack.url('metrics')}/metrics")).text
        assert "# TYPE helpline_cases_total counter" in totals
        assert 'state="decided"} ' in totals


async def test_publish_command_and_the_confluent_example_reach_cases(
    stack: Stack, tmp_path: Path
) -> None:
    env = {**stack.env}
    lines = "\n".join(
        json.dumps(make_report(99_100 + i, random.Random(i)) | {"source": "cli"}) for i in range(3)
    )
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "helpline_cli.main", "publish", "-"],
        input=lines.encode(),
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert b"published 3 report(s)" in done.stdout

    example = json.loads((Path(__file__).parent.parent / "examples/report.json").read_text())
    example["report_id"] = "confluent-e2e-1"
    path = tmp_path / "report.json"
    path.write_text(json.dumps(example))
    script = Path(__file__).parent.parent / "examples/publish_confluent.py"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), str(path), stack.settings.kafka_bootstrap_servers],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]

    for i in range(3):
        await case_stored(stack, str(derive_id("case", "cli", f"e2e-{99_100 + i:05d}")))
    await case_stored(stack, str(derive_id("case", example["source"], "confluent-e2e-1")))


async def test_no_reporter_data_on_other_topics_or_in_any_log(stack: Stack) -> None:
    """After every run above (valid, repeated, conflicting, malformed; Kafka, HTTP, form):
    reporters' names and emails are on no topic but the submitted one and the reporters
    topic (whose only reader, casework, shows them to practitioners), in no log line."""
    personal = [b"@school.example", b"Reporter ", b"A. Teacher", b"A Teacher", b"a@b.example"]
    servers = stack.settings.kafka_bootstrap_servers
    for topic in ALL_TOPICS:
        if topic.name in (REPORTS_SUBMITTED.name, CASE_REPORTERS.name):
            continue
        for r in await read_topic(servers, topic.name):
            carried = [r.key or b"", r.value or b""]
            if topic.name == REPORTS_REJECTED.name:
                carried.append(base64.b64decode(json.loads(r.value)["original_base64"]))
            for secret in personal:
                assert all(secret not in part for part in carried), (topic.name, secret)
    logs = sorted(stack.log_dir.glob("*.log"))
    assert logs
    for path in logs:
        text = path.read_bytes()
        for secret in personal:
            assert secret not in text, (path.name, secret)


async def test_every_service_stops_cleanly_on_sigterm(stack: Stack) -> None:
    """Last in this module: it stops the stack the tests above used."""
    for name in ("intake", "triage", "escalator", "metrics", "casework", "simulator"):
        started = time.monotonic()
        code = await asyncio.to_thread(stack.stop_service, name, 40.0)
        assert code == 0, f"{name} exited with {code}"
        assert time.monotonic() - started < 30, f"{name} overran the 30 s grace period"
        log = (stack.log_dir / f"{name}.log").read_text()
        assert "Traceback" not in log, f"{name}: {log[-2000:]}"
