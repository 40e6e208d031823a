"""TikTok's trusted-partner notice channel."""

from __future__ import annotations

from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class TikTokAdapter(NoticeApiAdapter):
    slug = "tiktok"
    path = "/tiktok/v1/notices"
    categories = {
        "online_reputation": "HARASSMENT_AND_BULLYING",
        "bullying_harassment": "HARASSMENT_AND_BULLYING",
        "impersonation": "IMPERSONATION",
        "school_branding_misuse": "INTELLECTUAL_PROPERTY",
        "privacy_images_doxxing": "PRIVACY",
        "threats_risk_to_life": "VIOLENT_THREATS",
    }
    default_category = "OTHER"
    decisions = {
        "IN_REVIEW": None,
        "CONTENT_REMOVED": "removed",
        "RESTRICTED_IN_REGION": "disabled",
        "AGE_RESTRICTED": "age_restricted",
        "NO_VIOLATION": "no_violation",
        "CONTENT_NOT_FOUND": "already_gone",
    }
