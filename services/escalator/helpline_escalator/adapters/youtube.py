"""YouTube's priority flagger channel."""

from __future__ import annotations

from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class YouTubeAdapter(NoticeApiAdapter):
    slug = "youtube"
    path = "/youtube/v1/notices"
    categories = {
        "online_reputation": "harassment_cyberbullying",
        "bullying_harassment": "harassment_cyberbullying",
        "impersonation": "impersonation",
        "school_branding_misuse": "trademark",
        "privacy_images_doxxing": "privacy",
        "threats_risk_to_life": "violent_criminal_organizations",
    }
    default_category = "other"
    decisions = {
        "UNDER_REVIEW": None,
        "REMOVED": "removed",
        "AGE_RESTRICTED": "age_restricted",
        "LIMITED_FEATURES": "demoted",
        "NO_ACTION": "no_violation",
        "VIDEO_UNAVAILABLE": "already_gone",
    }
