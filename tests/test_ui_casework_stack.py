"""A practitioner's day on the whole system (real broker, database, simulator and every
service as processes), driven in headless Chromium: a report whose URL no platform adapter
takes waits for a person and passes its short deadline; the practitioner signs in, finds it
at the top of the queue marked overdue, records the platform's decision, and the case page
shows it applied while `GET /v1/totals` counts it as a decision a practitioner recorded.
Screenshots go where `tests/test_ui_casework.py` puts them."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helpline_cli.infra import free_port
from helpline_cli.stack import SERVICES, Stack
from helpline_shared.events import case_reference
from helpline_shared.settings import Settings
from tests.conftest import fresh_database
from tests.helpers import create_key, every_scope_key, keyed_client
from tests.infra import Infra, dedicated_broker
from tests.test_e2e import wait_until
from tests.test_ui_casework import (
    browser,
    check_accessible,
    new_page,
    screenshot,
    shots,
    sign_in,
)

pytestmark = pytest.mark.e2e

__all__ = ["browser", "shots"]  # module fixtures shared with the pages' own tests

DEADLINE_S = 3  # every urgency's decision deadline, so the escalation is soon overdue


@pytest.fixture(scope="module")
async def stack(infra: Infra, tmp_dir: Path) -> AsyncIterator[Stack]:
    with dedicated_broker(infra, tmp_dir) as servers:
        env = {
            "HELPLINE_KAFKA_BOOTSTRAP_SERVERS": servers,
            "HELPLINE_DATABASE_URL": await fresh_database(infra, "helpline_pages_stack"),
            "HELPLINE_SIMULATOR_LATENCY_MS": "5",
            "HELPLINE_ESCALATION_STATUS_INTERVAL_S": "0.5",
            "HELPLINE_ESCALATION_POLL_INTERVAL_S": "0.2",
            "HELPLINE_DEADLINE_CRITICAL_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_HIGH_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_NORMAL_S": str(DEADLINE_S),
            "HELPLINE_DEADLINE_SCAN_INTERVAL_S": "0.5",
            "HELPLINE_LOG_JSON": "true",
            **{f"HELPLINE_{s.upper()}_PORT": str(free_port()) for s in SERVICES},
        }
        settings = Settings(**{k.removeprefix("HELPLINE_").lower(): v for k, v in env.items()})
        env["HELPLINE_PLATFORM_BASE_URL"] = f"http://127.0.0.1:{env['HELPLINE_SIMULATOR_PORT']}"
        s = await Stack.prepare(settings, log_dir=tmp_dir / "pages-stack-logs", extra_env=env)
        try:
            await s.start_services()
            yield s
        finally:
            await asyncio.to_thread(s.stop)


async def test_a_practitioner_records_an_overdue_escalations_outcome_and_totals_count_it(
    stack: Stack, browser: Any, shots: Path
) -> None:
    database_url = stack.settings.database_url or ""
    key = await every_scope_key(database_url)
    practitioner = await create_key(database_url, "practitioner", name="Sam Practitioner")
    tag = secrets.token_hex(4)
    url = f"https://forum.school-gossip.example/thread/{tag}"  # no adapter: a person's work
    async with keyed_client(stack.url("intake"), key) as client:
        answer = await client.post(
            "/v1/reports",
            json={
                "schema_version": 1,
                "source": "tests",
                "report_id": f"pages-stack-{tag}",
                "reporter": {"name": "Jo Bloggs", "email": f"jo.{tag}@school.example"},
                "organisation": "Oakfield Primary School",
                "description": "A forum thread names our deputy head with false accusations.",
                "urls": [url],
            },
        )
        assert answer.status_code == 202, answer.text
    case_id = uuid.UUID(answer.json()["case_id"])
    reference = case_reference(case_id)

    async def waiting_and_overdue() -> tuple[bool, Any]:
        async with keyed_client(stack.url("casework"), key) as client:
            queue = (await client.get("/v1/queue")).json()
        mine = [i for i in queue if i["case_id"] == str(case_id)]
        return bool(mine) and mine[0]["overdue"], mine

    await wait_until(waiting_and_overdue, 90, "the escalation waiting for a person, overdue")

    async def totals() -> dict[str, Any]:
        async with keyed_client(stack.url("metrics"), key) as client:
            return dict((await client.get("/v1/totals")).json())

    before = await totals()
    site = stack.url("casework")
    page, requested = await new_page(browser, site_of(site))
    await sign_in(page, site_of(site), practitioner)
    assert page.url == f"{site}/queue"
    first = page.locator("table.queue tbody tr").first
    assert await first.get_attribute("data-case") == str(case_id)
    assert "Overdue" in await first.inner_text()
    await screenshot(page, shots, "stack-queue")
    async with page.expect_navigation():
        await first.locator("a").click()
    assert await page.inner_text("h1") == f"Case {reference}"
    assert f"jo.{tag}@school.example" in await page.inner_text("main")

    form = "details:has(summary:text('The platform decided'))"
    await page.click(f"{form} summary")
    await page.select_option(f"{form} select[name=decision]", "removed")
    await page.fill(f"{form} textarea[name=note]", "The forum's moderator removed it by phone.")
    async with page.expect_navigation():
        await page.click(f"{form} button[type=submit]")
    assert "Recorded: the platform's decision." in await page.inner_text("#confirmation")

    async def applied() -> tuple[bool, Any]:
        await page.reload()
        state = await page.locator("article.escalation dd[data-state]").first.inner_text()
        return "Decided" in state and "applied" in await page.inner_text("ol.timeline"), state

    await wait_until(applied, 60, "the escalator applied the decision and casework shows it")
    article = await page.inner_text("article.escalation")
    assert "Removed" in article
    await check_accessible(page)
    await screenshot(page, shots, "stack-case-decided")
    assert all(r.startswith(site) for r in requested), requested

    async def counted() -> tuple[bool, Any]:
        after = await totals()
        return after.get("manual_decisions") != before.get("manual_decisions"), after

    await wait_until(counted, 60, "the totals counting the practitioner's decision")
    after = await totals()
    assert after["decisions"].get("removed", 0) == before["decisions"].get("removed", 0) + 1
    await page.context.close()


class _Site:
    def __init__(self, url: str) -> None:
        self.url = url


def site_of(url: str) -> Any:
    """What the pages' helpers need of a site: its URL."""
    return _Site(url)
