"""Triage's decision for one case, pure: its URLs read, its facts classified, the event built.

Deciding takes two steps because the rules read how many other cases reported the same
content, which the caller counts from storage: `read_urls` understands every URL (the
report's list, then any other the description holds) without fetching any of them, and
`decide` classifies the case and routes each URL. Given the same case, URLs, count, rules
and clock, `decide` always returns the same event; its ids are derived from the case id.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from helpline_shared.events import (
    CaseOpenedV1,
    CaseTriagedV1,
    Route,
    TriagedUrl,
    UrlKind,
    UrlOrigin,
    derive_id,
)
from helpline_triage.deadlines import Deadlines
from helpline_triage.links import extract_urls, understand
from helpline_triage.rules import CaseFacts, RuleSet

MAX_NORMALIZED_BYTES = 2000  # PostgreSQL's btree rows hold at most 2,704 bytes
FOUND_IN_DESCRIPTION = (
    "found in the description on no known platform, so a person decides whether it is "
    "the content reported"
)


@dataclass(frozen=True)
class ReadUrl:
    """One URL of a case as understood, before the case's route is known. `reason` is set
    when it must wait for a person whatever the rules decide; `note` is what understanding
    it said (why its platform is unknown, or that it is a short link)."""

    url: str
    normalized_url: str
    platform: str
    kind: UrlKind
    short_link: bool
    origin: UrlOrigin
    reason: str | None
    note: str | None = None

    @property
    def content(self) -> tuple[str, str] | None:
        """The content it names (platform, canonical form), when it could be read."""
        return None if self.reason else (self.platform, self.normalized_url)


def read_url(raw: str, origin: UrlOrigin) -> ReadUrl:
    """One URL as understood (pure: the same URL always reads the same)."""
    info = understand(raw)
    if not info.is_url or info.canonical_url is None:
        # Never dropped: it waits for a person, with the reason (which echoes nothing).
        why = info.reason or "cannot be read as a URL"
        return ReadUrl(raw, raw.strip(), "unknown", "unknown", False, origin, why)
    normalized, reason = info.canonical_url, None
    if len(normalized.encode()) > MAX_NORMALIZED_BYTES:
        # Percent-encoding can make a URL within intake's limit too long to index: a person
        # looks at it; the key keeps a digest of the whole.
        digest = hashlib.sha256(normalized.encode()).hexdigest()
        cut = normalized.encode()[:1800].decode("utf-8", "ignore")
        normalized = f"{cut}#sha256={digest}"
        reason = f"the URL is over {MAX_NORMALIZED_BYTES} bytes once normalised"
    elif origin == "description" and info.platform == "unknown":
        reason = FOUND_IN_DESCRIPTION
    return ReadUrl(
        raw, normalized, info.platform, info.kind, info.short_link, origin, reason, info.reason
    )


def read_urls(case: CaseOpenedV1) -> list[ReadUrl]:
    """The case's URLs, each once by canonical form: the reported ones in order (the first
    report of a content kept as reported), then those only its description holds."""
    out: dict[str, ReadUrl] = {}
    for url in case.urls:
        read = read_url(url, "urls")
        out.setdefault(read.normalized_url, read)
    for url in extract_urls(case.description):
        read = read_url(url, "description")
        out.setdefault(read.normalized_url, read)
    return list(out.values())


def decide(
    rules: RuleSet,
    case: CaseOpenedV1,
    urls: list[ReadUrl],
    prior_reports: int,
    now: datetime,
    *,
    deadlines: Deadlines | None = None,
) -> CaseTriagedV1:
    """The triaged event: the rules' classification of the case's facts, and per URL the
    route with the lead harm's DSA category and the platform's reason code. A URL's route is
    the case's, except `manual`, with the reason, when a person must look: it is unreadable,
    too long, found only in the description on no known platform, or reported on no known
    platform while the case goes to platforms (a hotline takes any URL). The decision is
    due `deadlines`' time for the urgency after the case was received (the rules' hours
    when None)."""
    known = [u for u in urls if u.reason is None and u.platform != "unknown"]
    c = rules.classify(
        CaseFacts(
            description=case.description,
            declared=list(case.issue_types),
            platforms=sorted({u.platform for u in known}),
            kinds=sorted({u.kind for u in known}),
            prior_reports=prior_reports,
        )
    )
    lead = c.lead_harm_type
    dsa = rules.dsa_category(lead)
    triaged: list[TriagedUrl] = []
    for u in urls:
        route: Route = c.route
        reason = u.reason
        if reason is not None:
            route = "manual"
        elif route == "platform" and u.platform == "unknown":
            route, reason = "manual", u.note
        triaged.append(
            TriagedUrl(
                url_id=derive_id("url", case.case_id, u.normalized_url),
                url=u.url,
                normalized_url=u.normalized_url,
                platform=u.platform,
                route=route,
                reason=reason,
                kind=u.kind,
                origin=u.origin,
                short_link=u.short_link,
                dsa_category=dsa,
                reason_code=rules.reason_code(lead, u.platform),
            )
        )
    return CaseTriagedV1(
        event_id=derive_id("case.triaged", case.case_id),
        case_id=case.case_id,
        received_at=case.received_at,
        triaged_at=now,
        harm_types=c.harm_types,
        urgency=c.urgency,
        route=c.route,
        rules_fired=[f"{c.rules_version}:{r}" for r in c.rules_fired],
        urls=triaged,
        rules_version=c.rules_version,
        lead_harm_type=lead,
        decision_due_at=case.received_at
        + (deadlines.of(c.urgency).after if deadlines else c.deadline),
        matches=list(c.matches),
        rejected_urls=[],
        # A simulated case belongs to the period it was published in; its deadline and
        # every duration still run from when intake received it.
        period_at=case.published_at if case.simulated else None,
    )
