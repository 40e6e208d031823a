"""The public report form's errors in a person's words, and its pages read in order by a
screen reader, in headless Chromium without JavaScript against intake on the real broker and
database: every page the form can answer (the form, its errors, a refused security check,
the thank-you page) has one h1, headings that never skip a level from the top, a label on
every control, error links that lead to their field, and described-by ids that exist; the
999 notice stays first. Over HTTP, what a person can get wrong (a link copied without
https://, a description or a list of links too long) is answered in words saying what to
do, never the validator's."""

from __future__ import annotations

import html
import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_report_form import LAPTOP, PHONE, browser, form_tokens, intake, screenshots

pytestmark = pytest.mark.e2e

__all__ = ["browser", "intake"]  # module fixtures shared with the form's own tests

OUTLINE = """() => {
  const problems = [];
  const h1s = document.querySelectorAll('h1');
  if (h1s.length !== 1) problems.push(`${h1s.length} h1 elements`);
  let last = 0;
  for (const h of document.querySelectorAll('h1, h2, h3, h4, h5, h6')) {
    const level = Number(h.tagName[1]);
    if (level > last + 1) problems.push(`${h.tagName} after h${last}: ${h.textContent.trim()}`);
    last = level;
  }
  for (const c of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
    if (!c.labels || c.labels.length === 0 || !c.labels[0].textContent.trim()) {
      problems.push(`no label: ${c.id || c.name}`);
    }
  }
  for (const a of document.querySelectorAll('.error-summary a')) {
    if (!document.getElementById(a.getAttribute('href').slice(1))) {
      problems.push(`error links to nothing: ${a.getAttribute('href')}`);
    }
  }
  for (const c of document.querySelectorAll('[aria-describedby]')) {
    for (const id of c.getAttribute('aria-describedby').split(' ')) {
      if (!document.getElementById(id)) problems.push(`describedby ${id} missing`);
    }
  }
  const first = document.querySelector('main > *');
  if (!first || !first.textContent.includes('call 999')) problems.push('999 notice not first');
  return problems;
}"""


async def _read_in_order(page: Any, name: str, folder: Path) -> None:
    assert await page.evaluate(OUTLINE) == [], name
    for width in (PHONE, LAPTOP):
        await page.set_viewport_size({"width": width, "height": 900})
        await page.screenshot(path=str(folder / f"review-{name}-{width}.png"), full_page=True)
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways at {width}px"


async def test_every_page_of_the_form_reads_in_order(intake: Any, browser: Any) -> None:
    folder = screenshots()
    context = await browser.new_context(
        viewport={"width": LAPTOP, "height": 900}, java_script_enabled=False
    )
    page = await context.new_page()
    try:
        await page.goto(f"{intake.url}/report")
        await _read_in_order(page, "form", folder)

        await page.fill("#f-email", "not an address")
        await page.fill("#f-urls", "not a link")
        async with page.expect_navigation():
            await page.click("button[type=submit]")
        assert "problems with your report" in await page.inner_text(".error-summary h2")
        await _read_in_order(page, "form-errors", folder)

        await context.clear_cookies()  # the security check's cookie gone: refused, kept
        tag = secrets.token_hex(4)
        await page.fill("#f-name", "Imogen Ashdown")
        await page.fill("#f-email", f"dsl.{tag}@oakfield-school.example")
        await page.fill("#f-description", "A fake account of our head teacher mocks pupils.")
        await page.fill("#f-urls", f"https://www.tiktok.com/@fake_head_{tag}/video/1")
        await page.check("#f-consent-yes")
        async with page.expect_navigation() as refused:
            await page.click("button[type=submit]")
        assert (await refused.value).status == 403
        assert (
            await page.input_value("#f-urls") == f"https://www.tiktok.com/@fake_head_{tag}/video/1"
        )
        await _read_in_order(page, "form-refused", folder)

        async with page.expect_navigation() as sent:
            await page.click("button[type=submit]")  # the page came with a fresh token
        assert (await sent.value).status == 202
        assert await page.inner_text("h1") == "Report received"
        await _read_in_order(page, "form-thanks", folder)
    finally:
        await context.close()


VALIDATOR_WORDS = re.compile(r"(String|List|Input|Value) should|after validation|urls\.\d")


async def _errors(intake: Any, **fields: str) -> list[str]:
    """The error summary's lines after posting the form with `fields`, checked: 422, and
    nothing in the validator's words."""
    typed = {
        "name": "Imogen Ashdown",
        "email": "dsl@oakfield-school.example",
        "description": "A fake account of our head teacher mocks pupils.",
        "urls": "https://www.tiktok.com/@fake_head/video/1",
        **fields,
    }
    async with httpx.AsyncClient(base_url=intake.url) as http:
        answer = await http.post("/report", data={**await form_tokens(http), **typed})
    assert answer.status_code == 422, answer.text
    summary = answer.text.split('class="error-summary"', 1)[1].split("</ul>", 1)[0]
    lines = [html.unescape(li) for li in re.findall(r'<a href="#[^"]+">([^<]+)</a>', summary)]
    assert lines, summary
    for line in lines:
        assert not VALIDATOR_WORDS.search(line), line
    return lines


async def test_what_a_person_gets_wrong_is_named_in_words_saying_what_to_do(
    intake: Any,
) -> None:
    links = "https://www.tiktok.com/@fake_head/video/1\n\nwww.tiktok.com/@fake_head/video/2"
    assert await _errors(intake, urls=links) == [
        "Links to the content, line 3: This link must start with https:// (copy it from "
        "the browser's address bar or the app's share button)"
    ]
    assert await _errors(intake, description="x" * 10_001) == [
        "What is happening: Shorten this to 10,000 characters or fewer (it has 10,001)"
    ]
    many = "\n".join(f"https://www.tiktok.com/@fake_head/video/{n}" for n in range(51))
    assert await _errors(intake, urls=many) == [
        "Links to the content: Send at most 50 links in one report, and the others in "
        "another report"
    ]
    assert await _errors(intake, child_affected="perhaps") == [  # not one of the answers
        "Is a child affected: Choose one of the answers shown"
    ]
