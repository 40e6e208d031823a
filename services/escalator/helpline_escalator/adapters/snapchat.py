"""Snapchat's safety partner channel: client id and secret (HTTP Basic), the plain notice shape;
no withdrawal of a sent notice."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class SnapchatAdapter(NoticeApiAdapter):
    slug = "snapchat"
    path = "/snapchat/v1/notices"
    auth = "basic"
    withdrawal = False  # a notice, once sent, stands
    categories = {
        "child_sexual_imagery": "child_sexual_exploitation",
        "threats_risk_to_life": "threat_of_violence",
        "self_harm": "self_harm_and_suicide",
        "privacy_images_doxxing": "privacy_concern",
        "hate": "hate_speech",
        "impersonation": "impersonation",
        "bullying_harassment": "bullying_or_harassment",
        "scams": "scam_or_fraud",
        "online_reputation": "defamation",
        "school_branding_misuse": "trademark_infringement",
        "other": "other",
    }
    decisions = {
        "RECEIVED": None,
        "REMOVED": "removed",
        "NO_VIOLATION": "no_violation",
        "NOT_FOUND": "already_gone",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "client_reference": str(notice.client_reference),
            "url": notice.url,
            "category": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "explanation": notice.explanation,
            "priority": "urgent" if notice.urgency == "critical" else "standard",
            "notifier": {"name": notice.notifier_name, "email": notice.notifier_email},
            "good_faith_statement": notice.good_faith_statement,
        }
