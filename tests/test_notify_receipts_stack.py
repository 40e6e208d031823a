"""The whole stack (intake, triage, escalator with the simulated platforms, metrics,
casework, notify) on the real broker and database, mail going to an SMTP server run by the
test: a report with an email through intake's API brings its reporter one receipt whose
private link opens the case's status page, then, once every URL has the platform's
decision, one outcome email naming each platform's decision; a report from a source that
opted out brings none."""

from __future__ import annotations

import asyncio
import re
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from helpline_cli.infra import free_port
from helpline_cli.stack import SERVICES, Stack
from helpline_shared.events import case_reference
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.helpers import every_scope_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import wait_until
from tests.test_notify_receipts_e2e import Catcher, catcher  # noqa: F401 (a fixture)

pytestmark = pytest.mark.e2e

OPTED_OUT = "partner-portal"
LINK = re.compile(r"https?://\S+/status/[A-Za-z0-9_-]{43}")


@pytest.fixture(scope="module")
async def stack(
    infra: Infra,
    tmp_dir: Path,
    catcher: tuple[Catcher, int],  # noqa: F811
) -> AsyncIterator[Stack]:
    _, smtp_port = catcher
    with dedicated_broker(infra, tmp_dir) as servers:
        database_url = await fresh_database(infra, "helpline_notify_stack")
        ports = {f"HELPLINE_{s.upper()}_PORT": str(free_port()) for s in SERVICES}
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": database_url,
            "HELPLINE_SIMULATOR_LATENCY_MS": "5",
            "HELPLINE_SIMULATOR_DECISION_DELAY_MS": "300",
            "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
            "HELPLINE_ESCALATION_RETRY_BASE_S": "0.2",
            "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
            "HELPLINE_SMTP_HOST": "127.0.0.1",
            "HELPLINE_SMTP_PORT": str(smtp_port),
            "HELPLINE_RECEIPT_OPT_OUT_SOURCES": f'["{OPTED_OUT}"]',
            "HELPLINE_STATUS_BASE_URL": f"http://127.0.0.1:{ports['HELPLINE_NOTIFY_PORT']}",
            "HELPLINE_LOG_JSON": "true",
            **ports,
        }
        fields: dict[str, Any] = {k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()}
        fields["receipt_opt_out_sources"] = [OPTED_OUT]
        settings = Settings(**fields)
        env["HELPLINE_PLATFORM_BASE_URL"] = f"http://127.0.0.1:{ports['HELPLINE_SIMULATOR_PORT']}"
        s = await Stack.prepare(settings, log_dir=tmp_dir / "notify-stack", extra_env=env)
        try:
            await s.start_services()
            yield s
        finally:
            await asyncio.to_thread(s.stop)


async def submit(stack: Stack, source: str, email: str, urls: list[str]) -> uuid.UUID:
    key = await every_scope_key(stack.settings.database_url or "", source=source)
    async with keyed_client(stack.url("intake"), key) as client:
        answer = await client.post(
            "/v1/reports",
            json={
                "schema_version": 1,
                "source": source,
                "report_id": f"notify-{secrets.token_hex(4)}",
                "reporter": {"name": "A. Teacher", "email": email, "role": "teacher"},
                "organisation": "Oakfield Primary School",
                "description": "Pupils are bullying a teacher in this video; abusive comments.",
                "urls": urls,
            },
        )
    assert answer.status_code == 202, answer.text
    return uuid.UUID(answer.json()["case_id"])


async def test_a_report_brings_one_receipt_with_a_working_link_then_one_outcome(
    stack: Stack,
    catcher: tuple[Catcher, int],  # noqa: F811
) -> None:
    handler, _ = catcher
    tag = secrets.token_hex(4)
    email, partner = f"dsl.{tag}@school.example", f"partner.{tag}@school.example"
    case_id = await submit(
        stack,
        "school-form",
        email,
        [
            f"https://www.tiktok.com/@acct{tag}/video/7301234567890123456",
            f"https://www.instagram.com/p/notify{tag}/",
        ],
    )
    opted_out = await submit(
        stack, OPTED_OUT, partner, [f"https://www.tiktok.com/@p{tag}/video/7301234567890123457"]
    )
    reference = case_reference(case_id)

    async def mails(count: int) -> tuple[bool, Any]:
        got = handler.to(email)
        return len(got) >= count, [m["Subject"] for m in got]

    await wait_until(lambda: mails(1), 90, "the receipt")
    receipt = handler.to(email)[0]
    assert reference in receipt["Subject"]
    plain = receipt.get_body(("plain",))
    assert plain is not None
    [link] = LINK.findall(plain.get_content())
    async with httpx.AsyncClient(timeout=10) as client:
        page = await client.get(link)
    assert page.status_code == 200, page.text[:300]
    assert reference in page.text
    assert email not in page.text

    await wait_until(lambda: mails(2), 180, "the outcome email")
    outcome = handler.to(email)[1]
    assert reference in outcome["Subject"]
    body = outcome.get_body(("plain",))
    assert body is not None
    words = body.get_content()
    assert "TikTok" in words
    assert "Instagram" in words
    assert "Article 21" in words
    await asyncio.sleep(3)
    assert len(handler.to(email)) == 2  # one receipt, one outcome: nothing more
    # The opted-out case was seen (its source and reporter held), and nothing queued for it.
    conn = await asyncpg.connect(stack.env["HELPLINE_DATABASE_URL"])
    try:

        async def seen() -> tuple[bool, Any]:
            row = await conn.fetchrow(
                "SELECT source, reporter_email IS NOT NULL AS has_email FROM notify.cases"
                " WHERE case_id = $1",
                opted_out,
            )
            got = None if row is None else (row["source"], row["has_email"])
            return got == (OPTED_OUT, True), got

        await wait_until(seen, 30, "notify holding the opted-out case")
        queued = await conn.fetchval(
            "SELECT count(*) FROM notify.mail WHERE case_id = $1", opted_out
        )
    finally:
        await conn.close()
    assert queued == 0
    assert handler.to(partner) == []  # its source tells its own users
