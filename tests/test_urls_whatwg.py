"""Reported URLs are read as browsers read them (WHATWG), and every URL ends somewhere
visible: refused at intake with a reason that echoes nothing, or escalated, or waiting for
a person with the reason."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from helpline_escalator.links import link_cases
from helpline_intake.validation import validate_report
from helpline_shared.events import CaseOpenedV1, CaseTriagedV1, ReportSubmittedV1, derive_id
from helpline_triage.decision import decide, read_urls
from helpline_triage.links import understand
from helpline_triage.rules import RuleSet

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "report.json"
RULES = RuleSet.load()


def with_urls(*urls: str) -> bytes:
    data: dict[str, Any] = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    data["urls"] = list(urls)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://www.tiktok.com:99999/x", "99999"),
        ("https://./x", "https://./x"),
        ("https://a..tiktok.com/x", "a..tiktok"),
        ("https://" + "a" * 64 + ".example/x", "a" * 64),
        ("https://jane.secret@tiktok.com/x", "jane.secret"),
        ("https://jane:secretpw@tiktok.com/x", "secretpw"),
        ("https://exa mple.com/x", "exa mple"),
        ("https://[::1/x", "[::1"),
    ],
    ids=["port", "dot-host", "empty-label", "long-label", "user", "password", "space", "ipv6"],
)
def test_intake_refuses_urls_a_browser_cannot_open_without_echoing_them(
    url: str, secret: str
) -> None:
    result = validate_report(with_urls("https://www.tiktok.com/@ok", url))

    assert isinstance(result, list), result
    assert [(r.loc, r.type) for r in result] == [("urls.1", "value_error")]
    assert secret not in result[0].message
    assert url not in result[0].message


def test_a_backslash_host_is_read_as_browsers_read_it() -> None:
    url = "http://evil.com\\@tiktok.com/x"

    assert isinstance(validate_report(with_urls(url)), ReportSubmittedV1)
    info = understand(url)
    assert info.canonical_url == "https://evil.com/@tiktok.com/x"
    assert info.platform == "unknown"
    assert understand(info.canonical_url).platform == "unknown"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://bücher.example/x", "https://xn--bcher-kva.example/x"),
        ("https://0x7f.1/x", "https://127.0.0.1/x"),
        ("https://www.tiktok.com/a/./b/../c", "https://www.tiktok.com/a/c"),
        ("https:tiktok.com/@a", "https://www.tiktok.com/@a"),
        ("http://[::1]:8080/x", "https://[::1]:8080/x"),
    ],
)
def test_normalize_follows_whatwg(url: str, normalized: str) -> None:
    assert understand(url).canonical_url == normalized


def opened(*urls: str) -> CaseOpenedV1:
    case_id = uuid.uuid4()
    return CaseOpenedV1(
        event_id=derive_id("case.opened", case_id),
        case_id=case_id,
        source="test",
        report_id=str(case_id),
        received_at=datetime(2026, 11, 25, tzinfo=UTC),
        description="A fake account is impersonating our head teacher.",
        urls=list(urls),
    )


def triage(case: CaseOpenedV1) -> CaseTriagedV1:
    return decide(RULES, case, read_urls(case), 0, datetime(2026, 11, 25, 1, tzinfo=UTC))


def test_a_url_triage_cannot_normalise_waits_for_a_person_with_the_reason() -> None:
    # Accepted by an older intake: triage must not drop it.
    triaged = triage(
        opened("https://www.tiktok.com:99999/x", "https://./x", "https://tiktok.com/@a")
    )

    assert triaged.rejected_urls == []
    manual = [u for u in triaged.urls if u.route == "manual"]
    assert [u.url for u in manual] == ["https://www.tiktok.com:99999/x", "https://./x"]
    assert all(u.reason and "cannot be read" in u.reason for u in manual)
    assert all("99999" not in (u.reason or "") for u in manual)
    assert [u.platform for u in triaged.urls if u.route == "platform"] == ["tiktok"]


async def test_the_escalator_records_the_reason_a_url_needs_a_person(
    pool: asyncpg.Pool,
) -> None:
    page = f"https://example.org/page-{uuid.uuid4().hex}"
    triaged = triage(opened("https://./x", page))

    async with pool.acquire() as conn, conn.transaction():
        await link_cases(conn, [triaged])
    rows = await pool.fetch(
        """SELECT e.normalized_url, e.state, e.reason FROM escalator.escalations e
           JOIN escalator.escalation_cases l USING (escalation_id)
           WHERE l.case_id = $1 ORDER BY l.url""",
        triaged.case_id,
    )

    assert [(r["normalized_url"], r["state"]) for r in rows] == [
        ("https://./x", "needs_manual"),
        (page, "needs_manual"),
    ]
    assert "cannot be read" in rows[0]["reason"]
    assert rows[1]["reason"] == understand(page).reason
