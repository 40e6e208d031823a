"""Snapchat's safety partner channel."""

from __future__ import annotations

from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class SnapchatAdapter(NoticeApiAdapter):
    slug = "snapchat"
    path = "/snapchat/v1/notices"
    categories = {
        "online_reputation": "bullying",
        "bullying_harassment": "bullying",
        "impersonation": "impersonation",
        "school_branding_misuse": "intellectual_property",
        "privacy_images_doxxing": "privacy",
        "threats_risk_to_life": "threats_violence",
    }
    default_category = "other"
    decisions = {
        "RECEIVED": None,
        "REMOVED": "removed",
        "NO_VIOLATION": "no_violation",
        "NOT_FOUND": "already_gone",
    }
