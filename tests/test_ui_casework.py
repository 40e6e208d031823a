"""The practitioners' pages in headless Chromium (Debian's `chromium`, driven by Playwright)
against the casework service served here on a real broker and a real database.

The read model is fed the way production feeds it: case, reporter, triage, outcome and
activity events published onto their topics, consumed by casework. Then a practitioner signs
in (and a wrong, a read-only and a revoked key do not), finds the queue in its order (the
hotline route, then overdue, then critical), reads a case, records an action whose command
reaches `helpline.practitioner.commands`, and a form without its CSRF token changes nothing.
Every page is checked for one h1, headings in order and a label on every control, loads
nothing from elsewhere, and is saved as a screenshot at phone (390 px) and laptop (1280 px)
widths under `$HELPLINE_SCREENSHOTS`, else the pytest basetemp's `screenshots/`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from helpline_casework import queries
from helpline_casework.app import create_app
from helpline_shared import apikeys
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationActivityV1,
    EscalationOutcomeV1,
    Reporter,
    ReporterDetailsV1,
    RuleMatch,
    TriagedUrl,
    case_reference,
    derive_id,
)
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_ACTIVITY,
    ESCALATION_OUTCOMES,
    PRACTITIONER_COMMANDS,
)
from helpline_shared.webapi import KEY_CACHE_S
from tests.browser_support import csrf_token, module_browser
from tests.conftest import fresh_database
from tests.helpers import read_topic
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_e2e import wait_until

pytestmark = pytest.mark.e2e

WIDTHS = {"phone": 390, "laptop": 1280}


@dataclass(frozen=True)
class Seeded:
    """One case put into the read model, with its one URL's escalation."""

    case_id: uuid.UUID
    escalation_id: uuid.UUID
    url: str
    email: str

    @property
    def reference(self) -> str:
        return case_reference(self.case_id)


@dataclass
class Site:
    url: str
    servers: str
    database_url: str
    practitioner_key: str
    practitioner_id: str
    read_key: str
    revoked_key: str
    cases: dict[str, Seeded] = field(default_factory=dict)


def _message(event: BaseModel, key: uuid.UUID) -> tuple[bytes, bytes]:
    return str(key).encode(), event.model_dump_json().encode()


def _case_events(
    name: str,
    *,
    now: datetime,
    urgency: str,
    route: str,
    platform: str,
    harm: str,
    state: str,
    age: timedelta,
    due_in: timedelta,
    reason: str | None = None,
    decision: str | None = None,
    platform_reference: str | None = None,
) -> tuple[Seeded, list[tuple[str, bytes, bytes]]]:
    """The events production would publish for a one-URL case reaching `state`."""
    case_id = uuid.uuid4()
    escalation_id = uuid.uuid4()
    url_id = derive_id(case_id, "url", 0)
    url = f"https://www.{platform}.example/@{name}-{case_id.hex[:6]}/video/1"
    received = now - age
    email = f"dsl.{name}@oakfield.example"
    due = now + due_in
    opened = CaseOpenedV1(
        event_id=derive_id(case_id, "opened"),
        case_id=case_id,
        source="pages-test",
        report_id=f"pages-{name}-{case_id.hex[:8]}",
        received_at=received,
        organisation="Oakfield Primary School",
        description=f"The {name} case: a video naming our deputy head, with abusive comments.",
        urls=[url],
        child_affected=harm == "child_sexual_imagery",
    )
    reporter = ReporterDetailsV1(
        event_id=derive_id(case_id, "reporter"),
        case_id=case_id,
        reporter=Reporter(name=f"Alex {name.title()}", email=email, role="safeguarding lead"),
        occurred_at=received,
    )
    triaged = CaseTriagedV1(
        event_id=derive_id(case_id, "triaged"),
        case_id=case_id,
        received_at=received,
        triaged_at=received + timedelta(seconds=2),
        harm_types=[harm],  # type: ignore[list-item]
        urgency=urgency,  # type: ignore[arg-type]
        route=route,  # type: ignore[arg-type]
        rules_fired=[f"rule.{harm}"],
        matches=[RuleMatch(rule_id=f"rule.{harm}", evidence=[f"matched: {name}"])],
        rules_version="pages-test-1",
        decision_due_at=due,
        urls=[
            TriagedUrl(
                url_id=url_id,
                url=url,
                normalized_url=url,
                platform=platform,
                route=route,  # type: ignore[arg-type]
                reason=reason,
            )
        ],
    )
    submit_at = received + timedelta(seconds=5)
    attempt = EscalationActivityV1(
        event_id=derive_id(escalation_id, "attempt", 1),
        escalation_id=escalation_id,
        platform=platform,
        kind="submit",
        started_at=submit_at,
        finished_at=submit_at + timedelta(seconds=1),
        http_status=503,
        result="retryable",
        error="platform unavailable",
    )
    outcome = EscalationOutcomeV1(
        event_id=derive_id(url_id, state),
        case_id=case_id,
        escalation_id=escalation_id,
        platform=platform,
        url=url,
        state=state,  # type: ignore[arg-type]
        decision=decision,  # type: ignore[arg-type]
        platform_reference=platform_reference,
        attempts=1,
        reason=reason,
        received_at=received,
        occurred_at=received + timedelta(seconds=10),
        url_id=url_id,
        route=route,  # type: ignore[arg-type]
        due_at=due,
        followups=0,
    )
    seeded = Seeded(case_id, escalation_id, url, email)
    return seeded, [
        (CASES_OPENED.name, *_message(opened, case_id)),
        (CASE_REPORTERS.name, *_message(reporter, case_id)),
        (CASES_TRIAGED.name, *_message(triaged, case_id)),
        (ESCALATION_ACTIVITY.name, *_message(attempt, escalation_id)),
        (ESCALATION_OUTCOMES.name, *_message(outcome, case_id)),
    ]


def _seed_plan(now: datetime) -> dict[str, tuple[Seeded, list[tuple[str, bytes, bytes]]]]:
    hour = timedelta(hours=1)
    return {
        # Waiting longest, but normal and not yet due: last in the queue.
        "normal": _case_events(
            "normal",
            now=now,
            urgency="normal",
            route="manual",
            platform="forum",
            harm="online_reputation",
            state="needs_manual",
            age=50 * hour,
            due_in=20 * hour,
            reason="unknown platform: no notice channel",
        ),
        "critical": _case_events(
            "critical",
            now=now,
            urgency="critical",
            route="platform",
            platform="tiktok",
            harm="threats_risk_to_life",
            state="needs_manual",
            age=timedelta(minutes=30),
            due_in=hour,
            reason="unclear answer to the notice",
        ),
        "overdue": _case_events(
            "overdue",
            now=now,
            urgency="high",
            route="platform",
            platform="instagram",
            harm="bullying_harassment",
            state="needs_manual",
            age=26 * hour,
            due_in=-2 * hour,
            reason="platform has no partner API",
        ),
        # The newest of all, and still first: the hotline route.
        "hotline": _case_events(
            "hotline",
            now=now,
            urgency="critical",
            route="hotline",
            platform="tiktok",
            harm="child_sexual_imagery",
            state="needs_manual",
            age=timedelta(minutes=5),
            due_in=2 * hour,
        ),
        # Decided "no violation": not waiting, and offers an appeal.
        "decided": _case_events(
            "decided",
            now=now,
            urgency="normal",
            route="platform",
            platform="youtube",
            harm="impersonation",
            state="decided",
            age=3 * hour,
            due_in=60 * hour,
            decision="no_violation",
            platform_reference="YT-2231",
        ),
    }


QUEUE_ORDER = ["hotline", "overdue", "critical", "normal"]
OVERRIDER = "0123456789ab"


def _later_events(
    plan: dict[str, tuple[Seeded, list[tuple[str, bytes, bytes]]]], now: datetime
) -> list[tuple[str, bytes, bytes]]:
    """The decided case's reporter erased, and its triage decision overridden by a person
    (revision 2, superseding triage's own)."""
    decided = plan["decided"][0]
    first = next(
        CaseTriagedV1.model_validate_json(value)
        for topic, _, value in plan["decided"][1]
        if topic == CASES_TRIAGED.name
    )
    erased = ReporterDetailsV1(
        event_id=derive_id(decided.case_id, "reporter", "erased"),
        case_id=decided.case_id,
        reporter=None,
        occurred_at=now,
    )
    override = first.model_copy(
        update={
            "event_id": derive_id(decided.case_id, "triaged", 2),
            "triaged_at": now - timedelta(minutes=1),
            "revision": 2,
            "supersedes": first.event_id,
            "overridden_by": OVERRIDER,
            "override_note": "A fake account of our head teacher: impersonation, high.",
            "urgency": "high",
        }
    )
    return [
        (CASE_REPORTERS.name, *_message(erased, decided.case_id)),
        (CASES_TRIAGED.name, *_message(override, decided.case_id)),
    ]


@pytest.fixture(scope="module")
async def site(infra: Infra, tmp_dir: Path) -> AsyncIterator[Site]:
    with dedicated_broker(infra, tmp_dir) as servers:
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=await fresh_database(infra, "helpline_pages"),
        )
        assert settings.database_url is not None
        await create_topics(settings)
        conn = await asyncpg.connect(settings.database_url)
        try:
            practitioner_id, practitioner = await apikeys.create(
                conn, ["practitioner"], None, "Pat Practitioner", "pages-test"
            )
            _, reader = await apikeys.create(conn, ["read"], None, "a dashboard", "pages-test")
            revoked_id, revoked = await apikeys.create(
                conn, ["practitioner"], None, "left the team", "pages-test"
            )
            assert await apikeys.revoke(conn, revoked_id)
        finally:
            await conn.close()
        plan = _seed_plan(datetime.now(UTC))
        async with served(create_app(settings)) as url:
            producer = AIOKafkaProducer(bootstrap_servers=servers)
            await producer.start()
            try:
                for _, messages in plan.values():
                    for topic, key, value in messages:
                        await producer.send_and_wait(topic, value, key=key)
                for topic, key, value in _later_events(plan, datetime.now(UTC)):
                    await producer.send_and_wait(topic, value, key=key)
            finally:
                await producer.stop()
            db = Database(settings.database_url)
            await db.open()
            try:

                async def all_applied() -> tuple[bool, Any]:
                    async with db.pool.acquire() as c:
                        waiting = await queries.queue(c, queries.QueueFilters())
                        decided = await queries.get_case(c, plan["decided"][0].case_id)
                    seen = {i.case_id for i in waiting}
                    ok = decided is not None and decided.escalations != []
                    ok = ok and decided is not None and len(decided.decisions) == 2
                    ok = ok and {plan[n][0].case_id for n in QUEUE_ORDER} <= seen
                    return ok, len(seen)

                await wait_until(all_applied, 60, "casework applied the seeded events")
            finally:
                await db.close()
            yield Site(
                url=url,
                servers=servers,
                database_url=settings.database_url,
                practitioner_key=practitioner,
                practitioner_id=practitioner_id,
                read_key=reader,
                revoked_key=revoked,
                cases={name: seeded for name, (seeded, _) in plan.items()},
            )


# -- the browser ---------------------------------------------------------------------------


browser = module_browser()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the run saves its screenshots."""
    configured = os.environ.get("HELPLINE_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.getbasetemp() / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def new_page(browser: Any, site: Site) -> tuple[Any, list[str]]:
    """A page in a fresh browser context (no cookies), recording every URL it requests."""
    context = await browser.new_context(viewport={"width": WIDTHS["laptop"], "height": 900})
    page = await context.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    return page, requested


async def sign_in(page: Any, site: Site, key: str) -> Any:
    response = await page.goto(f"{site.url}/signin")
    assert response.status == 200
    await page.fill("#key", key)
    async with page.expect_navigation():
        await page.click("button:has-text('Sign in')")
    return page


async def screenshot(page: Any, shots: Path, name: str) -> None:
    """The page at phone and laptop widths, full length; neither may scroll sideways."""
    for label, width in WIDTHS.items():
        await page.set_viewport_size({"width": width, "height": 900})
        path = shots / f"{name}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 5_000, path
        overflow = await page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways by {overflow}px at {width}px"
        print(f"screenshot: {path}")
    await page.set_viewport_size({"width": WIDTHS["laptop"], "height": 900})


ACCESSIBILITY = """() => {
  const problems = [];
  if (document.documentElement.lang !== 'en') problems.push('lang is not en');
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
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  for (const id of new Set(ids)) {
    if (ids.filter(x => x === id).length > 1) problems.push(`duplicate id ${id}`);
  }
  for (const a of document.querySelectorAll('.error-summary a')) {
    const target = document.getElementById(a.getAttribute('href').slice(1));
    if (!target) problems.push(`error links to nothing: ${a.getAttribute('href')}`);
  }
  for (const c of document.querySelectorAll('[aria-describedby]')) {
    for (const id of c.getAttribute('aria-describedby').split(/\\s+/)) {
      if (!document.getElementById(id)) problems.push(`describedby ${id} missing`);
    }
  }
  return problems;
}"""


async def check_accessible(page: Any) -> None:
    assert await page.evaluate(ACCESSIBILITY) == []


def only_local(requested: list[str], site: Site) -> None:
    assert requested
    assert all(r.startswith(site.url) for r in requested), requested


# -- the tests -----------------------------------------------------------------------------


async def test_signing_in_with_a_practitioner_key_shows_the_queue_most_pressing_first(
    site: Site, browser: Any, shots: Path
) -> None:
    page, requested = await new_page(browser, site)
    response = await page.goto(f"{site.url}/queue")
    assert page.url.startswith(f"{site.url}/signin?next=/queue")  # no session: sign in first
    assert response.status == 200
    await check_accessible(page)
    assert await page.get_attribute("#key", "type") == "password"
    await screenshot(page, shots, "signin")

    await page.fill("#key", site.practitioner_key)
    async with page.expect_navigation():
        await page.click("button:has-text('Sign in')")
    assert page.url == f"{site.url}/queue"
    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["helpline_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert site.practitioner_key not in json.dumps(list(cookies.values()))

    assert await page.inner_text("h1") == "Queue"
    assert "Pat Practitioner" in await page.inner_text(".account")
    rows = await page.query_selector_all("table.queue tbody tr")
    shown = [await r.get_attribute("data-case") for r in rows]
    expected = [str(site.cases[n].case_id) for n in QUEUE_ORDER]
    assert [c for c in shown if c in expected] == expected
    assert str(site.cases["decided"].case_id) not in shown  # decided: nobody waits on it
    hotline = page.locator(f"tr[data-case='{site.cases['hotline'].case_id}']")
    assert "Hotline" in await hotline.inner_text()
    overdue = page.locator(f"tr[data-case='{site.cases['overdue'].case_id}']")
    text = await overdue.inner_text()
    assert "Overdue" in text
    assert re.search(r"Overdue\s+2 h \d+ min ago", text), text
    assert "platform has no partner API" in text
    assert site.cases["overdue"].reference in text
    await check_accessible(page)
    await screenshot(page, shots, "queue")

    # The filters are a GET form: urgency critical leaves the hotline and critical cases.
    await page.select_option("#filter-urgency", "critical")
    async with page.expect_navigation():
        await page.click("button:has-text('Show')")
    assert "urgency=critical" in page.url
    shown = [
        await r.get_attribute("data-case")
        for r in await page.query_selector_all("table.queue tbody tr")
    ]
    assert shown == [str(site.cases[n].case_id) for n in ("hotline", "critical")]
    await page.fill("#filter-reason", "partner api")
    await page.select_option("#filter-urgency", "")
    async with page.expect_navigation():
        await page.click("button:has-text('Show')")
    shown = [
        await r.get_attribute("data-case")
        for r in await page.query_selector_all("table.queue tbody tr")
    ]
    assert shown == [str(site.cases["overdue"].case_id)]

    # A reference read out on the phone, typed in lower case, finds its case.
    await page.fill("#reference", site.cases["normal"].reference.lower())
    async with page.expect_navigation():
        await page.click("button:has-text('Find')")
    assert page.url == f"{site.url}/cases/{site.cases['normal'].case_id}"
    only_local(requested, site)
    await page.context.close()


async def test_wrong_read_only_and_revoked_keys_are_refused_in_words(
    site: Site, browser: Any, shots: Path
) -> None:
    page, _ = await new_page(browser, site)
    wrong = site.practitioner_key[:-4] + "AAAA"
    cases = [
        (wrong, 401, "not accepted"),
        (site.revoked_key, 401, "not accepted"),
        (site.read_key, 403, "does not have the practitioner scope"),
        ("", 401, "Enter your practitioner key"),
    ]
    for key, status, words in cases:
        await page.goto(f"{site.url}/signin")
        await page.fill("#key", key)
        async with page.expect_navigation() as nav:
            await page.click("button:has-text('Sign in')")
        answer = await nav.value
        assert answer.status == status, key
        assert page.url == f"{site.url}/signin"
        summary = await page.inner_text(".error-summary")
        assert words in summary
        assert await page.get_attribute(".error-summary a", "href") == "#key"
        assert await page.get_attribute("#key", "aria-invalid") == "true"
        assert await page.input_value("#key") == ""  # never echoed back
        if key:
            assert key not in await page.content()
        assert (await page.title()).startswith("Error: ")
        assert "helpline_session" not in {c["name"] for c in await page.context.cookies()}
        await check_accessible(page)
    await screenshot(page, shots, "signin-refused")
    await page.context.close()


async def test_the_case_page_shows_report_contacts_triage_escalations_and_timeline(
    site: Site, browser: Any, shots: Path
) -> None:
    case = site.cases["overdue"]
    page, requested = await new_page(browser, site)
    await sign_in(page, site, site.practitioner_key)
    response = await page.goto(f"{site.url}/cases/{case.case_id}")
    assert response.status == 200
    assert await page.inner_text("h1") == f"Case {case.reference}"
    body = await page.inner_text("main")
    assert str(case.case_id) in body
    assert case.email in body  # a practitioner sees the reporter's contact details
    assert "Alex Overdue" in body
    assert "Oakfield Primary School" in body
    assert "rule.bullying_harassment: matched: overdue" in body
    assert "pages-test-1" in body  # the rules version
    escalation = page.locator(f"article[data-escalation='{case.escalation_id}']")
    text = await escalation.inner_text()
    assert "Waiting for a practitioner" in text
    assert "Overdue" in text
    assert "platform has no partner API" in text
    # Actions offered by the state (needs_manual): by hand, decision, advice only; no appeal.
    summaries = [s.strip() for s in await escalation.locator("summary").all_inner_texts()]
    assert summaries == ["Escalated by hand", "The platform decided", "Close as advice only"]

    times = await page.locator("ol.timeline time").evaluate_all(
        "els => els.map(e => e.getAttribute('datetime'))"
    )
    assert times == sorted(times, key=datetime.fromisoformat)
    items = await page.locator("ol.timeline li").all_inner_texts()
    kinds = [next(k for k in TIMELINE_KINDS if k in item) for item in items]
    assert kinds == [
        "Report received",
        "Triage decision, revision 1",
        "Notice sent",
        "Waiting for a practitioner",
    ]
    assert "failed, to be tried again, HTTP 503: platform unavailable" in items[2]
    await check_accessible(page)
    await screenshot(page, shots, "case")

    decided = site.cases["decided"]
    await page.goto(f"{site.url}/cases/{decided.case_id}")
    text = await page.locator(f"article[data-escalation='{decided.escalation_id}']").inner_text()
    assert "No violation found" in text
    assert "YT-2231" in text
    assert "Appeal the decision" in text
    assert re.search(r"Decision due\s+\d\d \w{3} \d{4} \d\d:\d\d UTC", text)  # no countdown
    # Erased: the page says so and holds none of it.
    reporter = await page.inner_text("section[aria-labelledby=reporter-title]")
    assert "The reporter's details were erased." in reporter
    assert decided.email not in await page.content()
    # The override is the decision; triage's own stays in the history, superseded.
    triage = await page.inner_text("section[aria-labelledby=triage-title]")
    assert f"by {OVERRIDER} (override), revision 2" in triage
    assert "A fake account of our head teacher" in triage
    history = await page.locator("ol.history li").all_inner_texts()
    assert len(history) == 1
    assert history[0].startswith("Revision 1,")
    assert "by triage" in history[0]
    assert "Superseded." in history[0]
    await check_accessible(page)
    await screenshot(page, shots, "case-overridden-erased")
    only_local(requested, site)

    missing = await page.goto(f"{site.url}/cases/{uuid.uuid4()}")
    assert missing.status == 404
    assert await page.inner_text("h1") == "Case not found"
    await page.context.close()


TIMELINE_KINDS = (
    "Report received",
    "Triage decision, revision 1",
    "Notice sent",
    "Waiting for a practitioner",
)


def _commands_for(case: Seeded) -> Any:
    def keep(record: Any) -> bool:
        return bool(record.key == str(case.case_id).encode())

    return keep


async def test_recording_an_action_publishes_its_command_and_a_refusal_keeps_what_was_typed(
    site: Site, browser: Any, shots: Path
) -> None:
    case = site.cases["critical"]
    page, _ = await new_page(browser, site)
    await sign_in(page, site, site.practitioner_key)
    await page.goto(f"{site.url}/cases/{case.case_id}")
    article = f"article[data-escalation='{case.escalation_id}']"
    form = f"{article} details:has(summary:text('Escalated by hand'))"
    await page.click(f"{form} summary")

    # First without a note: refused in words, linked to the field, the reference kept.
    await page.fill(f"{form} input[name=platform_reference]", "TT-HAND-42")
    async with page.expect_navigation() as nav:
        await page.click(f"{form} button[type=submit]")
    assert (await nav.value).status == 422
    summary = page.locator(".error-summary")
    assert "Write a note" in await summary.inner_text()
    href = await summary.locator("a").get_attribute("href")
    assert href == "#e1-escalated_by_hand-note"
    assert await page.get_attribute(href, "aria-invalid") == "true"
    assert await page.input_value("#e1-escalated_by_hand-platform_reference") == "TT-HAND-42"
    assert await page.locator(f"{form}").get_attribute("open") is not None
    await check_accessible(page)
    await screenshot(page, shots, "case-action-refused")

    note = "Sent through TikTok's partner form; they acknowledged by email."
    await page.fill("#e1-escalated_by_hand-note", note)
    async with page.expect_navigation():
        await page.click(f"{form} button[type=submit]")
    assert page.url.startswith(f"{site.url}/cases/{case.case_id}?done=escalated_by_hand")
    assert "Recorded: escalated by hand" in await page.inner_text("#confirmation")
    await screenshot(page, shots, "case-action-recorded")

    records = await read_topic(
        site.servers, PRACTITIONER_COMMANDS.name, keep=_commands_for(case), expected=1
    )
    commands = {json.loads(r.value)["command_id"]: json.loads(r.value) for r in records}
    assert len(commands) == 1  # one action, one command (a relay may repeat it, same id)
    (command,) = commands.values()
    assert command["action"] == "escalated_by_hand"
    assert command["escalation_id"] == str(case.escalation_id)
    assert command["platform_reference"] == "TT-HAND-42"
    assert command["note"] == note
    assert command["actor"] == site.practitioner_id
    # The case shows the action at once, as pending.
    await page.goto(f"{site.url}/cases/{case.case_id}")
    assert "Escalated by hand" in await page.inner_text("ol.timeline")
    assert "pending" in await page.inner_text("ol.timeline")
    await page.context.close()


async def test_retriage_form_sends_the_override_to_triage(site: Site, browser: Any) -> None:
    case = site.cases["normal"]
    page, _ = await new_page(browser, site)
    await sign_in(page, site, site.practitioner_key)
    await page.goto(f"{site.url}/cases/{case.case_id}")
    await page.uncheck("#retriage-harm-online_reputation")
    async with page.expect_navigation() as nav:
        await page.click("button:has-text('Change the decision')")
    assert (await nav.value).status == 422
    errors = await page.inner_text(".error-summary")
    assert "Choose at least one harm type" in errors
    assert "Write a note" in errors
    await check_accessible(page)

    await page.check("#retriage-harm-bullying_harassment")
    await page.select_option("#retriage-urgency", "high")
    await page.fill("#retriage-note", "The video names a pupil too: bullying, high.")
    async with page.expect_navigation():
        await page.click("button:has-text('Change the decision')")
    assert "Recorded: the new triage decision" in await page.inner_text("#confirmation")
    records = await read_topic(
        site.servers, PRACTITIONER_COMMANDS.name, keep=_commands_for(case), expected=1
    )
    command = json.loads(records[0].value)
    assert command["action"] == "retriage"
    assert command["retriage"] == {
        "harm_types": ["bullying_harassment"],
        "urgency": "high",
        "route": "manual",
    }
    await page.context.close()


async def _signed_in_client(site: Site, key: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=site.url, timeout=10)
    token = csrf_token((await client.get("/signin")).text)
    answer = await client.post("/signin", data={"key": key, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/queue"
    return client


async def test_a_form_without_its_csrf_token_changes_nothing(
    site: Site, browser: Any, shots: Path
) -> None:
    case = site.cases["overdue"]
    action = f"/cases/{case.case_id}/escalations/{case.escalation_id}/actions"
    fields = {"action": "advice_only", "note": "closing this"}
    client = await _signed_in_client(site, site.practitioner_key)
    try:
        page = await client.get(f"/cases/{case.case_id}")
        assert page.status_code == 200
        good = csrf_token(page.text)
        missing = await client.post(action, data=fields)
        assert missing.status_code == 403
        assert "<h1>This form could not be accepted</h1>" in missing.text
        assert "nothing was changed" in missing.text
        # A token made for another browser's cookie does not pass either.
        async with httpx.AsyncClient(base_url=site.url) as other:
            theirs = csrf_token((await other.get("/signin")).text)
        forged = await client.post(action, data={**fields, "csrf_token": theirs})
        assert forged.status_code == 403
        # The page's own token passes that check (an empty note then stops it, in words).
        checked = await client.post(action, data={**fields, "note": " ", "csrf_token": good})
        assert checked.status_code == 422
        assert "Write a note" in checked.text
        # A page without a session sends the browser to sign in, and back afterwards.
        async with httpx.AsyncClient(base_url=site.url) as stranger:
            anonymous = await stranger.get(f"/cases/{case.case_id}")
            filtered = await stranger.get("/queue?urgency=high&platform=tiktok")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == f"/signin?next=/cases/{case.case_id}"
        assert filtered.status_code == 303
        assert filtered.headers["location"] == (
            "/signin?next=/queue%3Furgency%3Dhigh%26platform%3Dtiktok"
        )
    finally:
        await client.aclose()
    conn = await asyncpg.connect(site.database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM casework.commands WHERE escalation_id = $1", case.escalation_id
        )
    finally:
        await conn.close()
    assert stored == 0

    # A form on another site posting to ours, as a forged page in the browser would.
    page, _ = await new_page(browser, site)
    await sign_in(page, site, site.practitioner_key)
    await page.goto("about:blank")
    await page.set_content(
        f'<form method="post" action="{site.url}{action}">'
        '<input name="action" value="advice_only"><input name="note" value="forged">'
        '<button type="submit">Go</button></form>'
    )
    async with page.expect_navigation() as nav:
        await page.click("button")
    assert (await nav.value).status == 403
    assert await page.inner_text("h1") == "This form could not be accepted"
    await check_accessible(page)
    await screenshot(page, shots, "csrf-refused")
    await page.context.close()


async def test_sign_in_and_opening_a_case_by_keyboard_alone(
    site: Site, browser: Any, shots: Path
) -> None:
    page, _ = await new_page(browser, site)
    await page.goto(f"{site.url}/signin")
    for _ in range(10):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement.id") == "key":
            break
    else:
        raise AssertionError("the key field is not reachable by Tab")
    outline = await page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, parseFloat(s.outlineWidth)]; }"
    )
    assert outline[0] != "none"
    assert outline[1] >= 2  # focus is visible
    await page.keyboard.type(site.practitioner_key)
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert page.url == f"{site.url}/queue"
    first = site.cases[QUEUE_ORDER[0]]
    for _ in range(40):
        await page.keyboard.press("Tab")
        href = await page.evaluate("() => document.activeElement.getAttribute('href')")
        if href == f"/cases/{first.case_id}":
            break
    else:
        raise AssertionError("the first case's link is not reachable by Tab")
    await screenshot(page, shots, "queue-keyboard-focus")
    async with page.expect_navigation():
        await page.keyboard.press("Enter")
    assert await page.inner_text("h1") == f"Case {first.reference}"
    await page.context.close()


async def test_revoking_a_key_ends_its_sessions(site: Site, browser: Any) -> None:
    conn = await asyncpg.connect(site.database_url)
    try:
        key_id, key = await apikeys.create(conn, ["practitioner"], None, "temp", "pages-test")
        page, _ = await new_page(browser, site)
        await sign_in(page, site, key)
        assert page.url == f"{site.url}/queue"
        assert await apikeys.revoke(conn, key_id)
    finally:
        await conn.close()
    await asyncio.sleep(KEY_CACHE_S + 0.5)  # a live key is trusted that long per process
    await page.goto(f"{site.url}/queue")
    assert page.url.startswith(f"{site.url}/signin?next=/queue&notice=ended")
    assert "Your sign-in has ended" in await page.inner_text("main")
    assert "helpline_session" not in {c["name"] for c in await page.context.cookies()}

    # Signing out ends a session too, and the pages then ask to sign in again.
    page2, _ = await new_page(browser, site)
    await sign_in(page2, site, site.practitioner_key)
    async with page2.expect_navigation():
        await page2.click("button:has-text('Sign out')")
    assert page2.url == f"{site.url}/signin?notice=out"
    await page2.goto(f"{site.url}/queue")
    assert page2.url.startswith(f"{site.url}/signin")
    await page.context.close()
    await page2.context.close()


async def test_sign_in_returns_only_to_a_page_of_this_site_and_refuses_big_forms(
    site: Site,
) -> None:
    async with httpx.AsyncClient(base_url=site.url, timeout=10) as client:
        page = await client.get("/signin", params={"next": "/cases/abc"})
        assert 'name="next" value="/cases/abc"' in page.text
        before = csrf_token(page.text)
        for asked, sent_to in [
            ("/cases/abc", "/cases/abc"),
            ("//evil.example/x", "/queue"),
            ("https://evil.example/", "/queue"),
            ("/\\evil.example", "/queue"),
        ]:
            token = csrf_token((await client.get("/signin")).text)
            answer = await client.post(
                "/signin",
                data={"key": site.practitioner_key, "csrf_token": token, "next": asked},
            )
            assert answer.status_code == 303
            assert answer.headers["location"] == sent_to, asked
        # Signing in gave a new CSRF pair: a token from before it no longer passes.
        stale = await client.post("/signout", data={"csrf_token": before})
        assert stale.status_code == 403
        token = csrf_token((await client.get("/queue")).text)
        huge = await client.post("/signout", data={"csrf_token": token, "note": "x" * 70_000})
        assert huge.status_code == 413
        assert "That form is too large" in huge.text
        still = await client.get("/queue")
        assert still.status_code == 200  # nothing changed: still signed in
        assert huge.headers["content-security-policy"].startswith("default-src 'self'")
        css = await client.get("/static/helpline.css")
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert "/* casework pages */" in css.text


async def test_an_action_its_escalation_no_longer_allows_is_refused_in_words(site: Site) -> None:
    """A page older than the escalation's state (another practitioner acted meanwhile)."""
    case = site.cases["decided"]
    client = await _signed_in_client(site, site.practitioner_key)
    try:
        token = csrf_token((await client.get(f"/cases/{case.case_id}")).text)
        answer = await client.post(
            f"/cases/{case.case_id}/escalations/{case.escalation_id}/actions",
            data={"action": "advice_only", "note": "nothing to do", "csrf_token": token},
        )
        unknown = await client.post(
            f"/cases/{case.case_id}/escalations/{uuid.uuid4()}/actions",
            data={"action": "advice_only", "note": "nothing to do", "csrf_token": token},
        )
    finally:
        await client.aclose()
    assert answer.status_code == 409
    assert (
        '<a href="#e1">Not recorded: this escalation is now “Decided”, so “Close as advice '
        "only” cannot be recorded on it." in answer.text
    )
    assert '<article class="escalation" id="e1"' in answer.text
    assert unknown.status_code == 404
    assert "That escalation is not one of this case&#39;s. Nothing was recorded." in unknown.text
    conn = await asyncpg.connect(site.database_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM casework.commands WHERE case_id = $1", case.case_id
        )
    finally:
        await conn.close()
    assert stored == 0
