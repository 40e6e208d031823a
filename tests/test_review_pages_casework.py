"""The practitioners' pages when a case page outlives its sign-in, in headless Chromium
against casework served on the real broker and database (the read model seeded as
`tests/test_ui_casework.py` seeds it): signing in again in another tab gives the browser a
new CSRF pair, so the old page's form no longer holds. Sending it records nothing, and the
practitioner gets the case page back (403) with the form open and the note they typed,
named in words; sent again from there, it is recorded, and the timeline names who acted by
their key's name beside its id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.test_ui_casework import (
    Site,
    browser,
    check_accessible,
    screenshot,
    shots,
    sign_in,
    site,
)

pytestmark = pytest.mark.e2e

__all__ = ["browser", "shots", "site"]  # module fixtures shared with the pages' own tests


async def _commands(site: Site, escalation_id: Any) -> int:
    conn = await asyncpg.connect(site.database_url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM casework.commands WHERE escalation_id = $1", escalation_id
            )
        )
    finally:
        await conn.close()


async def test_a_form_from_before_signing_in_again_keeps_what_was_typed(
    site: Site, browser: Any, shots: Path
) -> None:
    case = site.cases["normal"]
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    old = await context.new_page()
    await sign_in(old, site, site.practitioner_key)
    await old.goto(f"{site.url}/cases/{case.case_id}")
    article = f"article[data-escalation='{case.escalation_id}']"
    form = f"{article} details:has(summary:text('Close as advice only'))"
    await old.click(f"{form} summary")
    note = "Advised the school to keep screenshots and to tell the pupil's parents."
    await old.fill(f"{form} textarea[name=note]", note)
    await old.fill("#retriage-note", "Bullying, not reputation.")

    await sign_in(await context.new_page(), site, site.practitioner_key)  # another tab

    async with old.expect_navigation() as refused:
        await old.click(f"{form} button[type=submit]")
    assert (await refused.value).status == 403
    assert await old.inner_text("h1") == f"Case {case.reference}"
    assert "security check no longer holds" in await old.inner_text(".error-summary")
    assert await old.locator(form).get_attribute("open") is not None
    assert await old.input_value(f"{form} textarea[name=note]") == note
    await check_accessible(old)
    await screenshot(old, shots, "review-stale-form")
    assert await _commands(site, case.escalation_id) == 0

    async with old.expect_navigation():
        await old.click(f"{form} button[type=submit]")  # the page came with a good token
    assert "Recorded: closed as advice only." in await old.inner_text("#confirmation")
    assert await _commands(site, case.escalation_id) == 1
    # The timeline names who acted: the key's name beside its id, not the id alone.
    timeline = await old.inner_text("ol.timeline")
    assert f"by Pat Practitioner (key {site.practitioner_id})" in timeline, timeline

    await old.fill("#retriage-note", "Bullying, not reputation.")
    await sign_in(await context.new_page(), site, site.practitioner_key)
    async with old.expect_navigation() as refused:
        await old.click("button:has-text('Change the decision')")
    assert (await refused.value).status == 403
    assert "security check no longer holds" in await old.inner_text(".error-summary")
    assert await old.input_value("#retriage-note") == "Bullying, not reputation."
    await context.close()
