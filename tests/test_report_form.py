"""The public report form as a school's designated safeguarding lead uses it, in headless
Chromium (Debian's `chromium`, driven by Playwright) and over HTTP, against intake served
on the real broker and database: a report filed by mouse or by keyboard alone opens its
case and the thank-you page gives its short reference; an error names fields in words and
keeps everything typed; a POST without the form's CSRF token, or past the per-address rate
limit, is refused and publishes nothing. Screenshots at 390 and 1280 px go to
`$HELPLINE_SCREENSHOTS`, else `tests/.screenshots/`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from limits import parse

from helpline_intake.app import create_app
from helpline_shared.events import case_reference
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import CASES_OPENED, REPORTS_REJECTED, REPORTS_SUBMITTED
from tests.browser_support import csrf_token, module_browser
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served

pytestmark = pytest.mark.e2e
PHONE, LAPTOP = 390, 1280
REFERENCE = re.compile(r"^HL-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")


async def form_tokens(http: httpx.AsyncClient) -> dict[str, str]:
    """What a browser posts back besides the fields: the form's CSRF token (the client
    keeps the cookie it pairs with, from GET /report) and the consent box ticked."""
    page = await http.get("/report")
    assert page.status_code == 200, page.text
    return {"csrf_token": csrf_token(page.text), "consent": "yes"}


@dataclass
class Served:
    url: str
    database_url: str
    servers: str

    async def case(self, case_id: str, timeout_s: float = 30) -> asyncpg.Record:
        """The stored report of `case_id` once intake opened the case."""
        conn = await asyncpg.connect(self.database_url)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                row = await conn.fetchrow(
                    "SELECT * FROM intake.reports WHERE case_id = $1", uuid.UUID(case_id)
                )
                if row is not None:
                    return row
                assert time.monotonic() < deadline, f"case {case_id} never opened"
                await asyncio.sleep(0.2)
        finally:
            await conn.close()

    async def count(self, sql: str, *args: Any) -> int:
        conn = await asyncpg.connect(self.database_url)
        try:
            return int(await conn.fetchval(sql, *args))
        finally:
            await conn.close()

    async def published(self, topic: str, marker: str) -> list[Any]:
        return await read_topic(
            self.servers, topic, keep=lambda r: marker.encode() in (r.value or b"")
        )


@pytest.fixture(scope="module")
async def intake(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    with dedicated_broker(infra, tmp_path_factory.mktemp("form-broker")) as servers:
        database_url = await fresh_database(infra, "helpline_form")
        settings = Settings(kafka_bootstrap_servers=servers, database_url=database_url)
        await create_topics(settings)
        async with served(create_app(settings)) as url:
            yield Served(url, database_url, servers)


def screenshots() -> Path:
    """`$HELPLINE_SCREENSHOTS`, else `tests/.screenshots/` (which git ignores)."""
    configured = os.environ.get("HELPLINE_SCREENSHOTS")
    folder = Path(configured) if configured else Path(__file__).parent / ".screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not configured and not ignore.exists():  # screenshots are output, never committed
        ignore.write_text("*\n", encoding="utf-8")
    return folder


browser = module_browser()


@pytest.fixture
async def page_at(browser: Any, intake: Served) -> AsyncIterator[Any]:
    """Opens a new page of `width` px; checks nothing it loaded came from elsewhere."""
    pages: list[tuple[Any, list[str]]] = []

    async def open_page(width: int) -> Any:
        context = await browser.new_context(viewport={"width": width, "height": 900})
        page = await context.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        pages.append((context, requested))
        return page

    yield open_page
    for context, requested in pages:
        await context.close()
        assert requested, "the page loaded nothing"
        assert all(u.startswith(intake.url) for u in requested), requested


def person() -> dict[str, str]:
    tag = secrets.token_hex(4)
    return {
        "name": f"Imogen Ashdown{tag}",
        "email": f"dsl.{tag}@oakfield-school.example",
        "role": "Designated safeguarding lead",
        "organisation": "Oakfield Primary School",
    }


async def check_page_basics(page: Any) -> None:
    """One h1, the language, a stylesheet that applied, and the 999 notice first."""
    assert await page.get_attribute("html", "lang") == "en-GB"
    assert await page.locator("h1").count() == 1
    first = page.locator("main > *").first
    assert "call 999" in (await first.inner_text())
    background = await page.evaluate(
        "getComputedStyle(document.querySelector('.notice-danger')).backgroundColor"
    )
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), "stylesheet not applied"
    wide = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not wide, "the page scrolls sideways"


async def test_a_lead_files_a_report_and_gets_a_reference_at_both_widths(
    intake: Served, page_at: Any
) -> None:
    for width in (PHONE, LAPTOP):
        who = person()
        tag = secrets.token_hex(4)
        page = await page_at(width)
        await page.goto(f"{intake.url}/report")
        await check_page_basics(page)
        await page.screenshot(path=screenshots() / f"report-form-{width}.png", full_page=True)

        await page.get_by_label("Your name").fill(who["name"])
        await page.get_by_label("Your email address").fill(who["email"])
        await page.get_by_label("Your role").fill(who["role"])
        await page.get_by_label("School or organisation").fill(who["organisation"])
        await page.get_by_label("What is happening, and why is it harmful?").fill(
            f"A fake TikTok account ({tag}) posts edited photos of a Year 6 pupil."
        )
        await page.get_by_label("Links to the content").fill(
            f"https://www.tiktok.com/@fake{tag}/video/7301234567890123456"
        )
        await (
            page.get_by_role("group", name="Is a child (under 18) affected?")
            .get_by_label("Yes")
            .check()
        )
        await page.get_by_label("Impersonation").check()
        await page.get_by_label("Bullying or harassment").check()
        await page.get_by_label("I agree that the helpline keeps").check()
        await page.get_by_role("button", name="Send report").click()

        await page.wait_for_selector("#case-reference")
        await check_page_basics(page)
        assert await page.locator("h1").inner_text() == "Report received"
        reference = (await page.locator("#case-reference").inner_text()).strip()
        case_id = (await page.locator("#case-id").inner_text()).strip()
        assert REFERENCE.match(reference), reference
        assert reference == case_reference(uuid.UUID(case_id))
        text = await page.locator("main").inner_text()
        assert "by email" in text
        assert "practitioner" in text
        await page.screenshot(path=screenshots() / f"report-thanks-{width}.png", full_page=True)

        # The case really opened, as the form said, and casework hears of it.
        row = await intake.case(case_id)
        assert row["reporter_email"] == who["email"]
        assert row["child_affected"] is True
        assert sorted(row["issue_types"]) == ["bullying_harassment", "impersonation"]
        [opened] = await intake.published(CASES_OPENED.name, case_id)
        assert json.loads(opened.value)["child_affected"] is True


async def test_an_error_names_fields_in_words_and_keeps_what_was_typed(
    intake: Served, page_at: Any
) -> None:
    who = person()
    tag = secrets.token_hex(4)
    links = f"https://www.tiktok.com/@ok{tag}\n\nhttp://exa mple.com:99999/{tag}"
    page = await page_at(PHONE)
    await page.goto(f"{intake.url}/report")
    await page.get_by_label("Your name").fill(who["name"])
    await page.get_by_label("Your email address").fill(f"not-an-email-{tag}")
    await page.get_by_label("What is happening, and why is it harmful?").fill(f"Abuse {tag}")
    await page.get_by_label("Links to the content").fill(links)
    await (
        page.get_by_role("group", name="Is a child (under 18) affected?")
        .get_by_label("Not sure")
        .check()
    )
    await page.get_by_label("Hate (race").check()
    await page.get_by_role("group", name="Have you already reported it").get_by_label("Yes").check()
    await page.get_by_label("What did the platform answer?").select_option("no_violation_found")
    await page.get_by_label("The platform's reference").fill(f"TT-{tag}")
    await page.get_by_label("I agree that the helpline keeps").check()
    await page.get_by_role("button", name="Send report").click()

    summary = page.locator(".error-summary")
    await summary.wait_for()
    items = [t.strip() for t in await summary.locator("li").all_inner_texts()]
    assert len(items) == 2, items
    assert items[0].startswith("Your email address: ")
    # The bad link is on the form's third line (the second is blank).
    assert items[1].startswith("Links to the content, line 3: This link ")
    text = await page.locator("main").inner_text()
    for path in ("reporter.email", "urls.1", "urls.2", "urls.", "prior_report"):
        assert path not in text, path
    assert await page.title() == "Error: Report harmful content \N{EN DASH} Online safety helpline"
    # Each error links to its field.
    for link in await summary.locator("a").all():
        target = (await link.get_attribute("href")).removeprefix("#")
        assert await page.locator(f"[id='{target}']").count() == 1, target
    assert await page.get_by_label("Your email address").get_attribute("aria-invalid") == "true"
    # Everything typed, ticked or chosen is still there.
    assert await page.get_by_label("Your name").input_value() == who["name"]
    assert await page.get_by_label("Your email address").input_value() == f"not-an-email-{tag}"
    assert await page.get_by_label("Links to the content").input_value() == links
    assert await page.get_by_label("What did the platform answer?").input_value() == (
        "no_violation_found"
    )
    assert await page.get_by_label("The platform's reference").input_value() == f"TT-{tag}"
    assert await page.get_by_label("Hate (race").is_checked()
    assert not await page.get_by_label("Impersonation").is_checked()
    assert (
        await page.get_by_role("group", name="Is a child (under 18) affected?")
        .get_by_label("Not sure")
        .is_checked()
    )
    assert await page.get_by_label("I agree that the helpline keeps").is_checked()
    await page.screenshot(path=screenshots() / f"report-error-{PHONE}.png", full_page=True)

    # Corrected, the same form (same report id) goes through.
    await page.get_by_label("Your email address").fill(who["email"])
    await page.get_by_label("Links to the content").fill(f"https://www.tiktok.com/@ok{tag}")
    await page.get_by_role("button", name="Send report").click()
    await page.wait_for_selector("#case-reference")
    row = await intake.case((await page.locator("#case-id").inner_text()).strip())
    assert row["child_affected"] is None
    assert row["schema_version"] == 2
    assert row["prior_platform_reference"] == f"TT-{tag}"


async def _tab_to(page: Any, selector: str, limit: int = 80) -> None:
    """Press Tab until the element matching `selector` has the focus."""
    for _ in range(limit):
        if await page.evaluate(f"document.activeElement.matches({json.dumps(selector)})"):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"Tab never reached {selector}")


async def test_the_form_can_be_completed_with_the_keyboard_alone(
    intake: Served, page_at: Any
) -> None:
    who = person()
    tag = secrets.token_hex(4)
    page = await page_at(LAPTOP)
    await page.goto(f"{intake.url}/report")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip-link"
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), "focus is not visible"
    for name, value in [
        ("name", who["name"]),
        ("email", who["email"]),
        ("description", f"A fake account of our head teacher {tag}."),
        ("urls", f"https://www.instagram.com/fake{tag}/"),
    ]:
        await _tab_to(page, f"[name={name}]")
        await page.keyboard.type(value)
    await _tab_to(page, "[name=child_affected]")
    await page.keyboard.press("ArrowRight")  # radios: arrows move to "No" and choose it
    await _tab_to(page, "[name=issue_types][value=impersonation]")
    await page.keyboard.press("Space")
    await _tab_to(page, "[name=consent]")
    await page.keyboard.press("Space")
    focused = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focused not in ("none", "")
    await _tab_to(page, "button[type=submit]")
    await page.keyboard.press("Enter")

    await page.wait_for_selector("#case-reference")
    row = await intake.case((await page.locator("#case-id").inner_text()).strip())
    assert row["child_affected"] is False
    assert list(row["issue_types"]) == ["impersonation"]


async def test_a_post_without_the_forms_token_is_403_and_nothing_is_sent(
    intake: Served,
) -> None:
    marker = f"csrf-{secrets.token_hex(4)}"
    fields = {
        "report_id": marker,
        "name": "Forged",
        "email": f"{marker}@school.example",
        "description": f"Forged {marker}",
        "urls": "https://www.tiktok.com/@forged",
        "consent": "yes",
    }
    before = await intake.count("SELECT count(*) FROM intake.rejections")
    async with (
        httpx.AsyncClient(base_url=intake.url) as forger,
        httpx.AsyncClient(base_url=intake.url) as victim,
        httpx.AsyncClient(base_url=intake.url) as cookieless,
    ):
        no_token = await forger.post("/report", data=fields)
        forged = await forger.post("/report", data={**fields, "csrf_token": "x" * 40})
        tokens = await form_tokens(forger)
        # Our token in another browser (with its own cookie), or with no cookie at all.
        await victim.get("/report")
        with_other = await victim.post("/report", data={**fields, **tokens})
        without_cookie = await cookieless.post("/report", data={**fields, **tokens})
        for answer in (no_token, forged, with_other, without_cookie):
            assert answer.status_code == 403
            assert "security check failed" in answer.text
            assert "Nothing was sent or kept" in answer.text
            assert f"Forged {marker}" in answer.text  # what they typed, offered again
            assert answer.headers["cache-control"] == "no-store"
        # No consent: the form again with the error; nothing stored or published either.
        no_consent = await forger.post("/report", data={**fields, **tokens, "consent": ""})
        assert no_consent.status_code == 422
        assert "Your consent: Tick the box" in no_consent.text
        # The same pair with consent goes through.
        sent = await forger.post("/report", data={**fields, **tokens})
        assert sent.status_code == 202, sent.text

    assert await intake.count("SELECT count(*) FROM intake.rejections") == before
    assert len(await intake.published(REPORTS_SUBMITTED.name, marker)) == 1
    assert await intake.published(REPORTS_REJECTED.name, marker) == []


async def test_posts_past_the_per_address_limit_are_429_with_retry_after(
    intake: Served,
) -> None:
    limit = parse(Settings().form_rate_limit).amount
    marker = f"rate-{secrets.token_hex(4)}"

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        return httpx.AsyncClient(base_url=intake.url, transport=transport)

    async with client("127.0.0.2") as flooding, client("127.0.0.3") as other:
        fields = {"description": marker, **await form_tokens(flooding)}
        for _ in range(limit):
            answer = await flooding.post("/report", data=fields)
            assert answer.status_code == 422  # counted, refused for its missing fields
        limited = await flooding.post("/report", data=fields)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "Too many reports from this connection" in limited.text
        assert marker in limited.text  # what they typed is kept
        # Another address is not limited by this one.
        assert (await other.post("/report", data=fields)).status_code == 403
    assert await intake.published(REPORTS_SUBMITTED.name, marker) == []


async def test_the_stylesheet_is_served_cacheable_and_linked(intake: Served) -> None:
    async with httpx.AsyncClient(base_url=intake.url) as http:
        page = await http.get("/report")
        link = re.search(r'<link rel="stylesheet" href="([^"]+)">', page.text)
        assert link
        assert link.group(1).startswith("/static/helpline.css?v=")
        css = await http.get(link.group(1))
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert "public" in css.headers["cache-control"]
        assert ".notice-danger" in css.text
        again = await http.get(
            "/static/helpline.css", headers={"if-none-match": css.headers["etag"]}
        )
        assert again.status_code == 304
