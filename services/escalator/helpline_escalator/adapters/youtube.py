"""YouTube's priority flagger channel: an API key header, camelCase fields."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class YouTubeAdapter(NoticeApiAdapter):
    slug = "youtube"
    path = "/youtube/v1/notices"
    auth = "api_key"
    api_key_header = "X-Goog-Api-Key"
    lookup_param = "clientReference"
    categories = {
        "child_sexual_imagery": "child_safety_sexualisation",
        "threats_risk_to_life": "violent_or_dangerous_threats",
        "self_harm": "suicide_and_self_harm",
        "privacy_images_doxxing": "privacy_complaint",
        "hate": "hateful_or_abusive_content",
        "impersonation": "impersonation",
        "bullying_harassment": "harassment_and_cyberbullying",
        "scams": "spam_scams_and_deceptive_practices",
        "online_reputation": "legal_defamation",
        "school_branding_misuse": "trademark",
        "other": "other",
    }
    decisions = {
        "UNDER_REVIEW": None,
        "REMOVED": "removed",
        "AGE_RESTRICTED": "age_restricted",
        "LIMITED_FEATURES": "demoted",
        "NO_ACTION": "no_violation",
        "VIDEO_UNAVAILABLE": "already_gone",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "clientReference": str(notice.client_reference),
            "contentUrl": notice.url,
            "reasonCode": self.reason_code(notice),
            "dsaCategory": notice.dsa_category,
            "explanation": notice.explanation,
            "priority": "HIGH" if notice.urgency == "critical" else "NORMAL",
            "flagger": {"displayName": notice.notifier_name, "email": notice.notifier_email},
            "goodFaithStatement": notice.good_faith_statement,
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"followUpCount": count, "message": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"appealReason": note}
