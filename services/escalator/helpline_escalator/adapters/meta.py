"""Meta's partner notice channel (Instagram, Facebook, Threads): one request shape, one
status vocabulary, an `Authorization: OAuth` token, a bona fide flag beside its statement;
each platform has its own endpoint, credentials and reason codes."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter
from helpline_shared.events import Decision

META_DECISIONS: dict[str, Decision | None] = {
    "PENDING": None,
    "REMOVED": "removed",
    "GEO_BLOCKED": "disabled",
    "WARNING_SCREEN": "labelled",
    "NOT_ACTIONED": "no_violation",
    "NOT_AVAILABLE": "already_gone",
}


class MetaAdapter(NoticeApiAdapter):
    auth = "oauth"
    lookup_param = "reporter_reference"
    decisions = META_DECISIONS
    # Meta's reason codes where triage gave none (Instagram and Threads; Facebook has its own).
    categories = {
        "child_sexual_imagery": "child_sexual_exploitation",
        "threats_risk_to_life": "violence_or_threat",
        "self_harm": "suicide_or_self_injury",
        "privacy_images_doxxing": "privacy_violation",
        "hate": "hate_speech_or_symbols",
        "impersonation": "pretending_to_be_someone",
        "bullying_harassment": "bullying_or_harassment",
        "scams": "scam_or_fraud",
        "online_reputation": "defamation",
        "school_branding_misuse": "intellectual_property_trademark",
        "other": "something_else",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "reporter_reference": str(notice.client_reference),
            "content": {"url": notice.url},
            "reason": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "explanation": notice.explanation,
            "notifier": {"name": notice.notifier_name, "email": notice.notifier_email},
            "bona_fide": True,
            "bona_fide_statement": notice.good_faith_statement,
            "urgent": notice.urgency == "critical",
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"follow_up_number": count, "explanation": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"explanation": note, "bona_fide": True}
