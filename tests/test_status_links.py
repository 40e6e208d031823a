"""The reporter's status link and page (issue 11 item 2) on the real broker and database:
the notify service served in this process consumes a case's events, its receipt carries a
private link, and that link's page shows that case in plain words and nothing internal nor
of any other case. Revoked, expired, unknown and malformed tokens all get the one same 404;
revoking needs a practitioner key and is recorded with who and when; the page is checked
in headless Chromium with a screenshot."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from helpline_cli.infra import free_port
from helpline_notify import status_links, status_page
from helpline_notify.app import create_app
from helpline_shared import apikeys
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    EscalationOutcomeV1,
    ReporterDetailsV1,
    case_reference,
)
from helpline_shared.kafka import create_topics
from helpline_shared.settings import Settings
from helpline_shared.topics import (
    CASE_REPORTERS,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_OUTCOMES,
)
from helpline_shared.webapi import Access, new_api
from tests.browser_support import CHROMIUM, playwright_api
from tests.conftest import fresh_database
from tests.infra import Infra, dedicated_broker
from tests.served import served
from tests.test_casework_readmodel import at, opened, outcome, reporter, triaged, url_of

pytestmark = pytest.mark.e2e

BASE_URL = "https://help.example.org"
LINK = re.compile(re.escape(BASE_URL) + r"/status/([A-Za-z0-9_-]{43})\b")

TOPIC_OF: dict[type[BaseModel], str] = {
    CaseOpenedV1: CASES_OPENED.name,
    CaseTriagedV1: CASES_TRIAGED.name,
    EscalationOutcomeV1: ESCALATION_OUTCOMES.name,
    ReporterDetailsV1: CASE_REPORTERS.name,
}


@dataclass
class Notify:
    url: str
    db: Database
    settings: Settings
    keys: dict[str, str]  # scope -> plaintext key
    key_ids: dict[str, str]  # scope -> key id
    producer: AIOKafkaProducer

    async def publish(self, events: Sequence[Any]) -> None:
        for e in events:
            await self.producer.send_and_wait(
                TOPIC_OF[type(e)], e.model_dump_json().encode(), key=str(e.case_id).encode()
            )

    def client(self, scope: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.keys[scope]}"} if scope else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10)


@pytest.fixture(scope="module")
async def notify(infra: Infra, tmp_dir: Path) -> AsyncIterator[Notify]:
    with dedicated_broker(infra, tmp_dir) as servers:
        url = await fresh_database(infra, "helpline_status_links")
        settings = Settings(
            kafka_bootstrap_servers=servers,
            database_url=url,
            status_base_url=BASE_URL,
            smtp_port=free_port(),  # nothing listens: mail stays queued, read from the outbox
            log_json=True,
        )
        db = Database(url)
        await db.open()
        try:
            await create_topics(settings)
            keys, key_ids = {}, {}
            async with db.pool.acquire() as conn:
                for scope in ("read", "practitioner", "submit", "admin"):
                    source = "status-test" if scope == "submit" else None
                    info, keys[scope] = await apikeys.create(conn, [scope], source, scope, "t")
                    key_ids[scope] = info
            producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all")
            await producer.start()
            try:
                async with served(create_app(settings)) as base:
                    yield Notify(base, db, settings, keys, key_ids, producer)
            finally:
                await producer.stop()
        finally:
            await db.close()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


@dataclass
class Case:
    case_id: uuid.UUID
    token: str  # from the receipt's link
    urls: list[str]
    escalation_ids: list[uuid.UUID]


async def case_with_receipt(n: Notify, events: list[Any], states: int) -> Case:
    """Publish a case's events; wait until notify holds `states` URL states and has queued
    the receipt; answers the case with the token read from the receipt's text."""
    case_id = events[0].case_id
    await n.publish(events)

    async def ready() -> str | None:
        body: str | None = await n.db.pool.fetchval(
            "SELECT body_text FROM notify.mail WHERE case_id = $1 AND kind = 'receipt'", case_id
        )
        held = await n.db.pool.fetchval(
            "SELECT count(*) FROM notify.urls WHERE case_id = $1", case_id
        )
        return body if body is not None and held == states else None

    body = await eventually(ready, "the receipt and the URL states")
    links = LINK.findall(body)
    assert links, "the receipt carries no status link under status_base_url"
    outcomes = [e for e in events if isinstance(e, EscalationOutcomeV1)]
    return Case(
        case_id,
        links[0],
        list(next(e for e in events if isinstance(e, CaseOpenedV1)).urls),
        sorted({e.escalation_id for e in outcomes}),
    )


def case_a() -> list[Any]:
    """TikTok removed the first URL (after two attempts); the second, on an unknown host,
    waits for a person (with an internal reason)."""
    case_id = uuid.uuid4()
    tiktok = url_of(case_id, "https://www.tiktok.com/@fake_head", "tiktok")
    unknown = url_of(case_id, "https://forum.example.org/t/1", "unknown", "manual", "no platform")
    return [
        opened(case_id, [tiktok.url, unknown.url]),
        reporter(case_id, 0),
        triaged(case_id, [tiktok, unknown], due_at=at(72 * 60)),
        outcome(case_id, tiktok, "submitted", 2, platform_reference="TT-1"),
        outcome(
            case_id, tiktok, "decided", 9, decision="removed", platform_reference="TT-1", attempts=2
        ),
        outcome(case_id, unknown, "needs_manual", 2, reason="no platform", attempts=0),
    ]


def case_b() -> list[Any]:
    """YouTube found no breach of its rules."""
    case_id = uuid.uuid4()
    yt = url_of(case_id, f"https://www.youtube.com/watch?v={case_id.hex[:11]}", "youtube")
    return [
        opened(case_id, [yt.url]),
        reporter(case_id, 0),
        triaged(case_id, [yt]),
        outcome(case_id, yt, "submitted", 3, platform_reference="YT-77"),
        outcome(case_id, yt, "decided", 30, decision="no_violation", platform_reference="YT-77"),
    ]


@pytest.fixture(scope="module")
async def two_cases(notify: Notify) -> tuple[Case, Case]:
    a = await case_with_receipt(notify, case_a(), states=2)
    b = await case_with_receipt(notify, case_b(), states=1)
    return a, b


def text_of(html: str) -> str:
    """The page's visible words, one space apart (tags dropped)."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


async def page_of(n: Notify, token: str) -> httpx.Response:
    async with n.client() as client:
        return await client.get(f"/status/{token}")


def assert_private(r: httpx.Response) -> None:
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert "noindex" in r.headers["x-robots-tag"]
    assert "script-src" not in r.headers["content-security-policy"]
    assert "<script" not in r.text.lower()
    assert '<meta name="robots" content="noindex' in r.text


async def test_the_receipts_link_shows_its_case_and_nothing_else(
    notify: Notify, two_cases: tuple[Case, Case]
) -> None:
    a, b = two_cases
    r = await page_of(notify, a.token)
    assert r.status_code == 200, r.text
    assert_private(r)
    words = text_of(r.text)
    assert case_reference(a.case_id) in words
    assert "TikTok removed it." in words
    assert "A practitioner is reporting it to the website that hosts it by hand." in words
    for url in a.urls:
        assert url in words
    # Nothing internal: ids, the platform's reference, reasons, the reporter, the report.
    internal = [
        str(a.case_id),
        *map(str, a.escalation_ids),
        "TT-1",
        "no platform",
        "a.teacher@school.example",
        "A. Teacher",
        "Oakfield Primary School",
        "impersonating our head teacher",
        "attempt",
    ]
    for secret in internal:
        assert secret.lower() not in r.text.lower(), secret
    # Nothing of the other case.
    for other in [case_reference(b.case_id), str(b.case_id), *b.urls, "YouTube", "YT-77"]:
        assert other not in r.text, other

    rb = await page_of(notify, b.token)
    assert rb.status_code == 200
    words_b = text_of(rb.text)
    assert case_reference(b.case_id) in words_b
    assert "YouTube found no breach of its rules." in words_b
    assert "You can ask YouTube to look again" in words_b  # the appeal route
    assert "We email you when every link has an outcome." in words

    async def outcome_queued() -> bool:  # every URL of b is decided: its outcome email
        return bool(
            await notify.db.pool.fetchval(
                "SELECT count(*) FROM notify.mail WHERE case_id = $1 AND kind = 'outcome'",
                b.case_id,
            )
        )

    await eventually(outcome_queued, "the outcome email of the decided case")
    words_b = text_of((await page_of(notify, b.token)).text)
    assert "We have emailed you the outcomes and your options." in words_b
    for other in [case_reference(a.case_id), *a.urls, "TikTok"]:
        assert other not in rb.text, other


async def test_a_case_in_progress_says_where_each_link_is(notify: Notify) -> None:
    case_id = uuid.uuid4()
    insta = url_of(case_id, "https://www.instagram.com/p/abc123/", "instagram")
    later = url_of(case_id, "https://www.reddit.com/r/x/comments/1/", "reddit")
    case = await case_with_receipt(
        notify,
        [
            opened(case_id, [insta.url, later.url]),
            reporter(case_id, 0),
            triaged(case_id, [insta, later]),
            outcome(case_id, insta, "submitted", 5),
        ],
        states=1,
    )
    r = await page_of(notify, case.token)
    assert r.status_code == 200
    words = text_of(r.text)
    sent = f"Sent to Instagram on {at(5).day} {at(5):%B %Y}. We are waiting for Instagram"
    assert sent in words
    assert "A practitioner is preparing the report to the platform." in words
    assert words.index(sent) < words.index("preparing the report")  # the triage's order
    assert "Reddit" not in words  # not escalated yet: its platform is not claimed


async def test_a_link_reported_to_the_hotline_names_the_hotline_and_is_not_shown(
    notify: Notify,
) -> None:
    """Child sexual imagery goes to the national hotline, not its platform: the page says
    so, and never shows the link back; the outcome email likewise."""
    case_id = uuid.uuid4()
    url = f"https://www.tiktok.com/@someone/video/7{case_id.int % 10**18:018d}"
    csam = url_of(case_id, url, "tiktok", "hotline")
    case = await case_with_receipt(
        notify,
        [
            opened(case_id, [csam.url]),
            reporter(case_id, 0),
            triaged(case_id, [csam], route="hotline", harm_types=("child_sexual_imagery",)),
            outcome(case_id, csam, "submitted", 4, platform_reference="HL-REF-1", route="hotline"),
        ],
        states=1,
    )
    r = await page_of(notify, case.token)
    assert r.status_code == 200
    words = text_of(r.text)
    assert "Reported to the national hotline on" in words
    assert "TikTok" not in words
    assert url not in r.text
    await notify.publish(
        [outcome(case_id, csam, "decided", 40, decision="removed", route="hotline")]
    )

    async def outcome_mail() -> str | None:
        body: str | None = await notify.db.pool.fetchval(
            "SELECT body_text FROM notify.mail WHERE case_id = $1 AND kind = 'outcome'", case_id
        )
        return body

    body = await eventually(outcome_mail, "the outcome email")
    assert "the national hotline" in body
    assert url not in body


async def test_only_the_tokens_digest_is_stored_and_it_expires_after_the_ttl(
    notify: Notify, two_cases: tuple[Case, Case]
) -> None:
    a, _ = two_cases
    async with notify.db.pool.acquire() as conn:
        token = await status_links.issue(conn, a.case_id, notify.settings)
        row = await conn.fetchrow(
            "SELECT case_id, expires_at - created_at AS ttl FROM notify.status_links"
            " WHERE token_sha256 = $1",
            hashlib.sha256(token.encode()).digest(),
        )
        assert row is not None
        assert row["case_id"] == a.case_id
        assert row["ttl"] == timedelta(days=notify.settings.status_link_ttl_days)
        dump = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM notify.status_links t")
        assert token not in dump
        assert await status_links.find(conn, token) == a.case_id
        other = await status_links.issue(conn, a.case_id, notify.settings)
    assert other != token
    assert len(token) == 43
    assert status_links.status_url(notify.settings, token) == f"{BASE_URL}/status/{token}"


async def test_revoked_expired_unknown_and_malformed_tokens_get_one_404(
    notify: Notify, two_cases: tuple[Case, Case]
) -> None:
    a, b = two_cases
    async with notify.db.pool.acquire() as conn:
        extra = await status_links.issue(conn, a.case_id, notify.settings)
        live_of_a = await conn.fetchval(
            "SELECT count(*) FROM notify.status_links WHERE case_id = $1 AND revoked_at IS NULL",
            a.case_id,
        )
        expiring = await status_links.issue(conn, b.case_id, notify.settings)
        await conn.execute(
            "UPDATE notify.status_links SET expires_at = now() - interval '1 second'"
            " WHERE token_sha256 = $1",
            hashlib.sha256(expiring.encode()).digest(),
        )
    assert (await page_of(notify, extra)).status_code == 200

    async with notify.client("practitioner") as client:
        r = await client.post(f"/v1/cases/{a.case_id}/status-link/revoke")
        assert r.status_code == 200, r.text
        assert r.json() == {"revoked": live_of_a}
        again = await client.post(f"/v1/cases/{a.case_id}/status-link/revoke")
        assert again.json() == {"revoked": 0}
    rows = await notify.db.pool.fetch(
        "SELECT revoked_by, revoked_at FROM notify.status_links WHERE case_id = $1", a.case_id
    )
    assert {r["revoked_by"] for r in rows} == {notify.key_ids["practitioner"]}
    assert all(r["revoked_at"] is not None for r in rows)

    unknown = "A" * 43
    malformed = "not-a-token"
    refused = [a.token, extra, expiring, unknown, malformed]
    pages = [await page_of(notify, t) for t in refused]
    assert [p.status_code for p in pages] == [404] * len(refused)
    assert len({p.text for p in pages}) == 1, "a refused token's page must not differ"
    assert_private(pages[0])
    assert "We cannot show this status page" in text_of(pages[0].text)
    assert case_reference(a.case_id) not in pages[0].text
    # The other case's receipt link still works: a revocation is the case's alone.
    assert (await page_of(notify, b.token)).status_code == 200


async def test_an_erased_reporters_link_stops_opening(notify: Notify) -> None:
    events = case_b()
    case = await case_with_receipt(notify, events, states=1)
    assert (await page_of(notify, case.token)).status_code == 200
    await notify.publish([reporter(case.case_id, 60, erased=True)])

    async def refused() -> bool:
        return (await page_of(notify, case.token)).status_code == 404

    await eventually(refused, "the erased reporter's link to be refused")
    unknown = await page_of(notify, "B" * 43)
    assert (await page_of(notify, case.token)).text == unknown.text


async def test_the_page_is_rate_limited_per_client(
    notify: Notify, two_cases: tuple[Case, Case]
) -> None:
    _, b = two_cases
    settings = notify.settings.model_copy(update={"rate_limit_per_client": "3/minute"})
    api = new_api("status pages", "test")
    api.include_router(status_page.build_router(notify.db, Access(notify.db, settings), settings))
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://notify") as client:
        codes = [(await client.get(f"/status/{b.token}")).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        again = await client.get(f"/status/{'C' * 43}")
        assert again.status_code == 429  # counted before the token is looked up
        assert int(again.headers["retry-after"]) >= 1


async def test_revoking_needs_a_practitioner_key(
    notify: Notify, two_cases: tuple[Case, Case]
) -> None:
    _, b = two_cases
    path = f"/v1/cases/{b.case_id}/status-link/revoke"
    async with notify.client() as anonymous:
        r = await anonymous.post(path)
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        r = await anonymous.post(path, headers={"Authorization": "Bearer hk_0_nope"})
        assert r.status_code == 401
    for scope in ("read", "submit", "admin"):
        async with notify.client(scope) as client:
            r = await client.post(path)
            assert r.status_code == 403, (scope, r.text)
            assert r.json()["needed_scope"] == "practitioner"
    assert (await page_of(notify, b.token)).status_code == 200
    revoked = await notify.db.pool.fetchval(
        "SELECT count(*) FROM notify.status_links WHERE case_id = $1 AND revoked_at IS NOT NULL",
        b.case_id,
    )
    expired = await notify.db.pool.fetchval(
        "SELECT count(*) FROM notify.status_links WHERE case_id = $1 AND expires_at <= now()",
        b.case_id,
    )
    assert revoked == 0 or revoked == expired  # only an expired link may have been ended
    async with notify.client("practitioner") as client:
        bad = await client.post("/v1/cases/not-a-uuid/status-link/revoke")
        assert bad.status_code == 422


async def test_the_status_page_in_chromium(
    notify: Notify, tmp_path_factory: pytest.TempPathFactory
) -> None:
    async_api = playwright_api()
    case = await case_with_receipt(notify, case_b(), states=1)
    url = f"{notify.url}/status/{case.token}"
    async with async_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            page = await browser.new_page(viewport={"width": 1024, "height": 800})
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            response = await page.goto(url)
            assert response is not None
            assert response.status == 200
            reference = case_reference(case.case_id)
            assert await page.title() == f"Your report {reference} \u2013 Online safety helpline"
            assert await page.inner_text("h1") == "Your report"
            assert (await page.inner_text("#case-reference")).strip() == reference
            items = await page.query_selector_all("#status-urls li")
            assert len(items) == 1
            assert "YouTube found no breach of its rules." in await items[0].inner_text()
            assert await page.query_selector_all("script") == []
            assert await page.query_selector_all("a[href^='http']") == []  # no links out
            # The stylesheet loaded and applied (the skip link is moved off screen).
            assert any(r.endswith(".css") or "/static/helpline.css" in r for r in requested)
            assert all(r.startswith(notify.url) for r in requested), requested
            skip = await page.query_selector(".skip-link")
            assert skip is not None
            box = await skip.bounding_box()
            assert box is None or box["y"] < 0 or box["x"] < 0 or box["height"] <= 1
            shot = Path(tmp_path_factory.getbasetemp()) / "status_page.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            print(f"status page screenshot: {shot}")
        finally:
            await browser.close()
