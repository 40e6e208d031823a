"""The reporter's status page and the practitioner's revocation of status links (issue 11
item 2).

`GET /status/{token}` needs no key: the token (see `status_links`) is the only credential.
The page says the case's short reference and, for each reported URL, its platform, its
state and the platform's outcome in plain words, and what the reporter can do next (appeal
routes, advice). It shows nothing internal: no attempt records, failure reasons, notes,
actors, ids beyond the reference, nor any other case. It is read from notify's own tables
(`notify.cases`, `notify.urls`), so it shows what notify has consumed so far. A malformed,
unknown, expired or revoked token gets one and the same 404 page, so the page is no oracle
for which tokens once existed; nor does a link of a case whose reporter was erased open.
Requests count against the client address's rate limit (`rate_limit_per_client`).

Every page is `Cache-Control: no-store`, `X-Robots-Tag: noindex` and `Referrer-Policy:
no-referrer` (the token is in its URL), loads only `/static/helpline.css` (served here too)
and no JavaScript.

`POST /v1/cases/{case_id}/status-link/revoke` (a `practitioner` key) revokes every live
link of the case, recording the key id and the time, and answers `{"revoked": n}`; again,
it answers 0.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the revoke endpoint's names a dependency local to `build_router`.

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, Field

from helpline_notify import status_links
from helpline_notify.emails import HOTLINE, HOTLINE_LINK
from helpline_notify.usecase import FINAL_STATES
from helpline_shared.apikeys import KeyInfo
from helpline_shared.db import Conn, Database
from helpline_shared.events import case_reference
from helpline_shared.logging import get_logger
from helpline_shared.platform_names import PLATFORM_NAMES as KNOWN_PLATFORM_NAMES
from helpline_shared.settings import Settings
from helpline_shared.webapi import AUTH_RESPONSES, Access

log = get_logger(__name__)

# Each platform by name; a URL on no known platform, as this page words it.
PLATFORM_NAMES = {**KNOWN_PLATFORM_NAMES, "unknown": "the website that hosts it"}

# The token is in the page's URL: never cached, indexed, framed or sent on as a Referer.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
    "form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
}

APPEAL_ADVICE = (
    "You can ask {platform} to look again: use the appeal or \u201crequest a review\u201d "
    "option in the message {platform} sent you if you reported it yourself, or reply to our "
    "email quoting your case reference and we will appeal for you. If you live in the EU you "
    "can also take the decision to a certified out-of-court dispute settlement body."
)


def platform_name(slug: str) -> str:
    """The platform's name as people write it; an unlisted slug as given."""
    return PLATFORM_NAMES.get(slug, slug)


def day(at: datetime) -> str:
    """A date as a person reads it: 26 November 2026."""
    return f"{at.day} {at:%B %Y}"


@dataclass(frozen=True)
class UrlStatus:
    """One reported URL as the reporter sees it: nothing internal."""

    url: str | None
    platform: str | None
    headline: str  # its state and outcome in plain words
    next_step: str | None  # what the reporter can do about it, if anything
    final: bool


def _decision_words(p: str, decision: str | None) -> str:
    return {
        "removed": f"{p} removed it.",
        "disabled": f"{p} disabled it: it can no longer be seen.",
        "age_restricted": f"{p} kept it up but only adults can now see it.",
        "demoted": f"{p} kept it up but shows it to fewer people.",
        "labelled": f"{p} kept it up with a warning label.",
        "no_violation": f"{p} found no breach of its rules.",
        "already_gone": f"It had already gone when {p} looked.",
    }.get(decision or "", f"{p} made a decision.")


def describe(row: asyncpg.Record | None) -> UrlStatus:
    """The plain words for one URL's latest state (`row` from `notify.urls`, None when the
    URL is not yet escalated). Reasons and attempts stay internal: they are never shown."""
    if row is None:
        return UrlStatus(
            None, None, "A practitioner is preparing the report to the platform.", None, False
        )
    p = platform_name(row["platform"])
    when = day(row["occurred_at"])
    state, decision = row["state"], row["decision"]
    next_step: str | None = None
    final = False
    if row["route"] == "hotline":
        # Child sexual imagery: reported to the national hotline, never to the platform's
        # notice channel, and the link is not shown back.
        if state in ("decided", "appeal_decided"):
            headline = (
                f"Reported to the national hotline. {_decision_words('The platform', decision)}"
            )
        elif state == "closed":
            headline = "Reported to the national hotline; a practitioner has closed this link."
        elif state in ("submitted", "breached"):
            headline = (
                f"Reported to the national hotline on {when}, which works with the police "
                "and the platform to have it removed."
            )
        else:
            headline = "A practitioner is reporting it to the national hotline."
        return UrlStatus(HOTLINE_LINK, HOTLINE, headline, None, state in FINAL_STATES)
    if state == "submitted":
        headline = f"Sent to {p} on {when}. We are waiting for {p} to decide."
    elif state == "needs_manual":
        headline = f"A practitioner is reporting it to {p} by hand."
    elif state == "breached":
        headline = f"{p} has not decided in the time we expect (as of {when}). We are chasing it."
    elif state in ("decided", "appeal_decided"):
        words = _decision_words(p, decision)
        prefix = "After our appeal: " if state == "appeal_decided" else ""
        headline = f"{prefix}{words} Decided on {when}."
        final = True
        if decision == "no_violation":
            next_step = (
                APPEAL_ADVICE.format(platform=p)
                if state == "decided"
                else f"{p} kept its decision after our appeal. A practitioner will tell you "
                "by email whether anything else can be done."
            )
    elif state == "appealed":
        headline = f"{p} found no breach of its rules; we appealed on {when} and are waiting."
    elif state == "failed":
        headline = (
            f"We could not get the report to {p}. A practitioner will tell you by email what "
            "else can be done."
        )
        final = True
    elif state == "closed":
        headline = "A practitioner closed this link with advice: it is not being reported."
        final = True
    elif state == "withdrawn":
        # Final for the outcome email too (usecase.FINAL_STATES): when it is reported
        # another way, that escalation's state replaces this one.
        headline = "A practitioner looked again and is reporting it another way."
        final = True
    else:
        headline = f"With {p}."
    return UrlStatus(row["url"], p, headline, next_step, final)


@dataclass(frozen=True)
class CaseStatus:
    reference: str
    received: str | None
    urls: list[UrlStatus]
    emailed: bool  # the outcome email is queued to the reporter

    @property
    def finished(self) -> bool:
        return bool(self.urls) and all(u.final for u in self.urls)


async def load(conn: Conn, case_id: uuid.UUID) -> CaseStatus:
    """What the page shows of `case_id`, from notify's tables alone. The URLs are those of
    the case's latest triage (each with its latest state), then any escalated URL the
    triage known here does not list yet (the topics arrive in any order)."""
    case = await conn.fetchrow(
        "SELECT received_at, url_ids, outcome_queued_at FROM notify.cases WHERE case_id = $1",
        case_id,
    )
    rows = await conn.fetch(
        "SELECT url_id, url, platform, state, decision, occurred_at, route FROM notify.urls"
        " WHERE case_id = $1 ORDER BY occurred_at, url",
        case_id,
    )
    by_id = {r["url_id"]: r for r in rows}
    order: list[uuid.UUID] = list(case["url_ids"] or []) if case is not None else []
    order += [r["url_id"] for r in rows if r["url_id"] not in order]
    received = case["received_at"] if case is not None else None
    return CaseStatus(
        reference=case_reference(case_id),
        received=day(received) if received is not None else None,
        urls=[describe(by_id.get(url_id)) for url_id in order],
        emailed=case is not None and case["outcome_queued_at"] is not None,
    )


class Revoked(BaseModel):
    revoked: int = Field(ge=0, description="How many live links of the case were revoked.")


class StatusPages:
    """Renders the status pages (HTML-escaped; missing values are errors, not blanks)."""

    def __init__(self) -> None:
        self._env = Environment(
            loader=PackageLoader("helpline_notify", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
        )
        css = (resources.files("helpline_shared") / "static" / "helpline.css").read_bytes()
        self.css = css
        self.etag = f'"{hashlib.sha256(css).hexdigest()[:16]}"'
        self.stylesheet = f"/static/helpline.css?v={self.etag.strip(chr(34))[:8]}"

    def status(self, case: CaseStatus) -> str:
        return self._env.get_template("status.html").render(stylesheet=self.stylesheet, case=case)

    def not_found(self) -> str:
        return self._env.get_template("status_not_found.html").render(stylesheet=self.stylesheet)


def build_router(db: Database, access: Access, settings: Settings) -> APIRouter:
    """`GET /status/{token}`, `GET /static/helpline.css` and
    `POST /v1/cases/{case_id}/status-link/revoke` (see module doc)."""
    pages = StatusPages()
    router = APIRouter()
    practitioner = access.require("practitioner")

    @router.get("/status/{token}", include_in_schema=False)
    async def status_page(token: str, request: Request) -> HTMLResponse:
        access.limit_client(request)  # a 429 past HELPLINE_RATE_LIMIT_PER_CLIENT
        async with db.pool.acquire() as conn:
            case_id = await status_links.find(conn, token)
            if case_id is None:
                return HTMLResponse(pages.not_found(), 404, headers=PAGE_HEADERS)
            case = await load(conn, case_id)
        return HTMLResponse(pages.status(case), 200, headers=PAGE_HEADERS)

    @router.get("/static/helpline.css", include_in_schema=False)
    async def stylesheet(request: Request) -> Response:
        headers = {
            "Cache-Control": "public, max-age=86400",
            "ETag": pages.etag,
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == pages.etag:
            return Response(status_code=304, headers=headers)
        return Response(pages.css, media_type="text/css; charset=utf-8", headers=headers)

    @router.post(
        "/v1/cases/{case_id}/status-link/revoke",
        response_model=Revoked,
        summary="Revoke every status link of a case",
        description="Every live status link of the case stops opening its page at once; "
        "who revoked them (the key id) and when is stored. Idempotent: again, it answers 0.",
        responses=AUTH_RESPONSES,
        tags=["status links"],
    )
    async def revoke(
        case_id: uuid.UUID, caller: Annotated[KeyInfo, Depends(practitioner)]
    ) -> Revoked:
        async with db.pool.acquire() as conn:
            n = await status_links.revoke(conn, case_id, caller.key_id)
        log.info("status links revoked", case_id=str(case_id), key_id=caller.key_id, revoked=n)
        return Revoked(revoked=n)

    return router
