"""Reddit's notice channel for trusted reporters: client id and secret (HTTP Basic), the reason
as the site rule broken, a certification text."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class RedditAdapter(NoticeApiAdapter):
    slug = "reddit"
    path = "/reddit/v1/notices"
    auth = "basic"
    lookup_param = "client_ref"
    categories = {
        "child_sexual_imagery": "minor_sexualization",
        "threats_risk_to_life": "threatening_violence",
        "self_harm": "self_harm_or_suicide",
        "privacy_images_doxxing": "personal_information",
        "hate": "hate",
        "impersonation": "impersonation",
        "bullying_harassment": "harassment",
        "scams": "fraud_or_scam",
        "online_reputation": "legal_defamation",
        "school_branding_misuse": "trademark_infringement",
        "other": "other",
    }
    decisions = {
        "PENDING_REVIEW": None,
        "REMOVED": "removed",
        "QUARANTINED": "disabled",
        "APPROVED": "no_violation",
        "ALREADY_DELETED": "already_gone",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "client_ref": str(notice.client_reference),
            "target_url": notice.url,
            "rule": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "explanation": notice.explanation,
            "notifier": {"name": notice.notifier_name, "email": notice.notifier_email},
            "certification": notice.good_faith_statement,
        }

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"explanation": note}
