"""TikTok's trusted-partner notice channel: bearer token, snake_case fields, the notifier as
`reporter`."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class TikTokAdapter(NoticeApiAdapter):
    slug = "tiktok"
    path = "/tiktok/v1/notices"
    auth = "bearer"
    lookup_param = "external_id"
    categories = {
        "child_sexual_imagery": "minor_safety_sexual_exploitation",
        "threats_risk_to_life": "violent_threats",
        "self_harm": "suicide_and_self_harm",
        "privacy_images_doxxing": "privacy_personal_information",
        "hate": "hate_speech_and_behaviour",
        "impersonation": "impersonation",
        "bullying_harassment": "harassment_and_bullying",
        "scams": "frauds_and_scams",
        "online_reputation": "defamation",
        "school_branding_misuse": "trademark_infringement",
        "other": "other",
    }
    decisions = {
        "IN_REVIEW": None,
        "CONTENT_REMOVED": "removed",
        "RESTRICTED_IN_REGION": "disabled",
        "AGE_RESTRICTED": "age_restricted",
        "NO_VIOLATION": "no_violation",
        "CONTENT_NOT_FOUND": "already_gone",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "external_id": str(notice.client_reference),
            "content_url": notice.url,
            "violation_type": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "description": notice.explanation,
            "priority": "urgent" if notice.urgency == "critical" else "normal",
            "reporter": {"name": notice.notifier_name, "email": notice.notifier_email},
            "good_faith_declaration": notice.good_faith_statement,
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"reminder_count": count, "description": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"appeal_reason": note}
