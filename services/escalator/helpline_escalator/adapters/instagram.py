"""Instagram's (Meta) partner notice channel."""

from __future__ import annotations

from helpline_escalator.adapters.notice_api import NoticeApiAdapter

META_CATEGORIES = {
    "online_reputation": "bullying_harassment",
    "bullying_harassment": "bullying_harassment",
    "impersonation": "impersonation",
    "school_branding_misuse": "trademark",
    "privacy_images_doxxing": "privacy_violation",
    "threats_risk_to_life": "violence_incitement",
}
META_DECISIONS = {
    "PENDING": None,
    "REMOVED": "removed",
    "GEO_BLOCKED": "disabled",
    "WARNING_SCREEN": "labelled",
    "NOT_ACTIONED": "no_violation",
    "NOT_AVAILABLE": "already_gone",
}


class InstagramAdapter(NoticeApiAdapter):
    slug = "instagram"
    path = "/instagram/v1/notices"
    categories = META_CATEGORIES
    default_category = "other"
    decisions = META_DECISIONS  # type: ignore[assignment]
