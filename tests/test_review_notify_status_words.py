"""The status page agrees with the outcome email on when a case is finished: a URL whose
report was withdrawn after a re-triage (and that the current triage no longer lists) is
final for the outcome email (usecase.FINAL_STATES), so the page must not keep saying the
case is in progress beside it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from helpline_notify.status_page import CaseStatus, describe
from helpline_notify.usecase import FINAL_STATES


def url_row(state: str, decision: str | None = None) -> dict[str, object]:
    return {
        "url_id": uuid.uuid4(),
        "url": "https://www.tiktok.com/@someone/video/1",
        "platform": "tiktok",
        "state": state,
        "decision": decision,
        "occurred_at": datetime(2026, 11, 26, tzinfo=UTC),
        "route": "platform",
    }


def test_every_state_final_for_the_outcome_email_is_final_on_the_page() -> None:
    for state in sorted(FINAL_STATES):
        assert describe(url_row(state, "removed")).final, state  # type: ignore[arg-type]


def test_a_case_with_a_decided_and_a_withdrawn_url_is_finished() -> None:
    urls = [describe(url_row("decided", "removed")), describe(url_row("withdrawn"))]  # type: ignore[arg-type]
    assert CaseStatus("HL-TEST-TEST", None, urls, emailed=False).finished
    pending = [describe(url_row("submitted")), describe(url_row("withdrawn"))]  # type: ignore[arg-type]
    assert not CaseStatus("HL-TEST-TEST", None, pending, emailed=False).finished
