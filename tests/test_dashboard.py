"""The dashboard in headless Chromium (Debian's `chromium`, driven by Playwright): after
reports went through the real stack, its headline numbers equal the API's `/v1/totals`,
its five charts are accessible SVGs, it loads nothing from elsewhere, and a screenshot is
saved under the pytest basetemp."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpline_cli.stack import Stack
from helpline_metrics.dashboard import render
from helpline_metrics.totals import totals as totals_of
from tests.browser_support import CHROMIUM, playwright_api
from tests.conftest import fresh_database
from tests.helpers import bearer, every_scope_key
from tests.infra import Infra
from tests.test_e2e import wait_until
from tests.test_prometheus import SERVICES, publish_reports, stack, totals

pytestmark = pytest.mark.e2e
REPORTS = 8

__all__ = ["stack"]


def expected_headline(t: dict[str, Any]) -> dict[str, str]:
    """The headline as the page should show it, computed here from the API document."""
    rate = t["takedown_rate"]
    past_due = sum(p["past_due"] for p in t["open_escalations"].values())
    return {
        "cases": f"{t['cases']:,}",
        "urls_escalated": f"{t['urls_escalated']:,}",
        "url_reports": f"{t['url_reports']['total']:,}",
        "takedown_rate": "n/a" if rate is None else f"{100 * rate:.1f}%",
        "past_due": f"{past_due:,}",
    }


async def test_dashboard_in_chromium_shows_the_apis_numbers(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async_api = playwright_api()
    await stack.wait_ready(SERVICES)
    await publish_reports(stack, REPORTS, seed=3)

    async def decided() -> tuple[bool, Any]:
        t = await totals(stack)
        return t["cases"] == REPORTS and t["decisions"] != {}, (t["cases"], t["decisions"])

    await wait_until(decided, 60, "reports counted and some platform decisions")

    url = f"{stack.url('metrics')}/dashboard"
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            key = await every_scope_key(stack.settings.database_url or "")
            page = await browser.new_page(
                viewport={"width": 1366, "height": 900}, extra_http_headers=bearer(key)
            )
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            for _ in range(20):  # the pipeline may still move: compare a quiet moment
                before = await totals(stack)
                response = await page.goto(url)
                assert response is not None
                assert response.status == 200
                shown = {
                    await dd.get_attribute("data-figure"): (await dd.inner_text()).strip()
                    for dd in await page.query_selector_all("dd[data-figure]")
                }
                after = await totals(stack)
                if {**before, "as_of": ""} == {**after, "as_of": ""}:
                    break
            else:
                raise AssertionError("the totals never held still for one page load")
            assert shown == expected_headline(after)
            assert shown["cases"] == str(REPORTS)

            assert await page.title() == "Helpline dashboard"
            assert await page.inner_text("h1") == "Helpline dashboard"
            svgs = await page.query_selector_all("figure svg[role=img]")
            assert len(svgs) == 5
            for svg in svgs:
                for part in ("title", "desc"):
                    node = await svg.query_selector(part)
                    assert node is not None
                    assert ((await node.text_content()) or "").strip()
            headings = [await h.inner_text() for h in await page.query_selector_all("figure h2")]
            assert headings == [
                "Cases per month",
                "Share of cases involving each platform",
                "Platform decisions per platform",
                "Median time to removal per platform",
                "Open escalations past their deadline",
            ]
            month = after["as_of"][:7]
            desc = await page.text_content("#cases-per-month desc") or ""
            assert f"{month}: {after['cases_by_month'][month]}" in desc
            share = await page.text_content("#platform-share desc") or ""
            for platform, v in after["cases_by_platform"].items():
                assert f"{platform}: {100 * v['share']:.1f}%" in share
            origin = stack.url("metrics")
            assert requested
            assert all(r.startswith(origin) for r in requested), requested

            shot = Path(tmp_path_factory.getbasetemp()) / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"dashboard screenshot: {shot}")
        finally:
            await browser.close()


async def test_dashboard_of_an_empty_database_says_so(infra: Infra) -> None:
    """Before any case: zeros, a takedown rate of n/a, and each chart says it has no data."""
    conn = await asyncpg.connect(await fresh_database(infra, "helpline_dash"))
    try:
        page = render(await totals_of(conn))
    finally:
        await conn.close()
    shown = dict(re.findall(r'data-figure="(\w+)" data-value="[^"]*">([^<]*)<', page))
    assert shown == {
        "cases": "0",
        "urls_escalated": "0",
        "url_reports": "0",
        "takedown_rate": "n/a",
        "past_due": "0",
    }
    assert page.count("<desc") == 5
    assert page.count("No data yet.</desc>") == 5
    assert "://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
