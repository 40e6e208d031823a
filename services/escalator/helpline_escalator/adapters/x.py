"""X's (formerly Twitter) notice channel: bearer token, an attestation text."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class XAdapter(NoticeApiAdapter):
    slug = "x"
    path = "/x/v1/notices"
    auth = "bearer"
    lookup_param = "reference_id"
    categories = {
        "child_sexual_imagery": "child_sexual_exploitation",
        "threats_risk_to_life": "violent_speech",
        "self_harm": "suicide_or_self_harm",
        "privacy_images_doxxing": "private_information",
        "hate": "hateful_conduct",
        "impersonation": "impersonation",
        "bullying_harassment": "abuse_and_harassment",
        "scams": "scam_or_fraud",
        "online_reputation": "defamation",
        "school_branding_misuse": "trademark_policy",
        "other": "other",
    }
    decisions = {
        "OPEN": None,
        "DELETED": "removed",
        "WITHHELD": "disabled",
        "LABELED": "labelled",
        "NO_VIOLATION": "no_violation",
        "NOT_FOUND": "already_gone",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "reference_id": str(notice.client_reference),
            "reported_url": notice.url,
            "violation": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "details": notice.explanation,
            "reporter": {"full_name": notice.notifier_name, "email": notice.notifier_email},
            "attestation": notice.good_faith_statement,
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"followup_count": count, "details": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"details": note}
