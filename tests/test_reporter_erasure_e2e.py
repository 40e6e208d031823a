"""End to end on the whole stack (real broker, database, simulator): a reporter's cases go
through triage, escalation, metrics and casework (which keeps a copy of the reporter);
`helpline reporter erase` then leaves the email in no table of any schema, casework's copy
dropped through the null reporter it publishes, and `GET /v1/totals` answers exactly as
before."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpline_cli.stack import Stack
from tests.helpers import every_scope_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import _stack, wait_until
from tests.test_reporter_erasure import erase, holding

pytestmark = pytest.mark.e2e

PENDING = ("queued", "in_flight", "retrying", "submitted")
IN_INTAKE = '"intake"."reports"."reporter_email"'
IN_NOTIFY = ('"notify"."cases"."reporter_email"', '"notify"."mail"."recipient"')


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        async for s in _stack(infra, servers, tmp_dir / "erasure"):
            yield s


async def totals(stack: Stack) -> dict[str, Any]:
    key = await every_scope_key(stack.settings.database_url or "")
    async with keyed_client(key=key) as client:
        answer = dict((await client.get(f"{stack.url('metrics')}/v1/totals")).json())
    answer.pop("as_of")  # when it was read, not what it counts
    return answer


async def test_erased_reporter_is_in_no_table_and_totals_stay(stack: Stack) -> None:
    tag = secrets.token_hex(4)
    email = f"dsl.{tag}@erasure-school.example"
    name = f"Philippa Marchbanks{tag}"
    urls = [
        f"https://www.tiktok.com/@acct{tag}/video/7301234567890123456",
        f"https://www.instagram.com/p/erase{tag}/",
    ]
    cases = []
    key = await every_scope_key(stack.settings.database_url or "", source="erasure-e2e")
    async with keyed_client(stack.url("intake"), key) as client:
        for n, url in enumerate(urls):
            body = {
                "schema_version": 1,
                "source": "erasure-e2e",
                "report_id": f"erase-{tag}-{n}",
                "reporter": {"name": name, "email": email, "role": "safeguarding lead"},
                "organisation": "Oakfield Primary School",
                "description": "Pupils are bullying a teacher in this video; abusive comments.",
                "urls": [url],
            }
            answer = await client.post("/v1/reports", json=body)
            assert answer.status_code == 202, answer.text
            cases.append(uuid.UUID(answer.json()["case_id"]))

    async def settled() -> tuple[bool, Any]:
        t = await totals(stack)
        by_state = t["escalations"]["by_state"]
        pending = sum(v for k, v in by_state.items() if k in PENDING)
        return t["cases"] == 2 and t["escalations"]["total"] >= 2 and not pending, t

    await wait_until(settled, 120, "both cases escalated and decided")
    before = await totals(stack)
    database_url = stack.env["HELPLINE_DATABASE_URL"]
    conn = await asyncpg.connect(database_url)
    try:
        # Only intake, casework's copy and notify's (from helpline.cases.reporters; notify's
        # outbox holds the receipt's recipient) hold it: triage, the escalator and metrics
        # got cases without it.
        async def copied() -> tuple[bool, Any]:
            found = sorted(await holding(conn, email))
            return found == sorted(['"casework"."reporters"."email"', IN_INTAKE, *IN_NOTIFY]), found

        await wait_until(copied, 30, "casework's copy of the reporter")
        assert await conn.fetchval("SELECT count(*) FROM triage.decisions") == 2

        servers = stack.env["HELPLINE_KAFKA_BOOTSTRAP_SERVERS"]
        code, out = await erase(database_url, email, "--yes", "--by", "e2e", servers=servers)
        assert code == 0, out
        assert "reporter erased in 2 case(s)" in out
        assert "null reporter published for 2 case(s)" in out
        # Intake's row at once; casework's and notify's copies as soon as they read the
        # null reporters.
        assert IN_INTAKE not in await holding(conn, email)

        async def forgotten() -> tuple[bool, Any]:
            found = [await holding(conn, secret) for secret in (email, name)]
            return found == [[], []], found

        await wait_until(forgotten, 30, "casework and notify dropping their copies")
        erased = await conn.fetch(
            "SELECT erased_at FROM casework.reporters WHERE case_id = ANY($1::uuid[])", cases
        )
        assert len(erased) == 2
        assert all(r["erased_at"] is not None for r in erased)
    finally:
        await conn.close()
    assert await totals(stack) == before
    for case_id in cases:
        assert str(case_id) in out
