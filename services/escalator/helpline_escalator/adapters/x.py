"""X's (formerly Twitter) notice channel."""

from __future__ import annotations

from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class XAdapter(NoticeApiAdapter):
    slug = "x"
    path = "/x/v1/notices"
    categories = {
        "online_reputation": "abuse_harassment",
        "bullying_harassment": "abuse_harassment",
        "impersonation": "impersonation",
        "school_branding_misuse": "trademark",
        "privacy_images_doxxing": "private_information",
        "threats_risk_to_life": "violent_speech",
    }
    default_category = "other"
    decisions = {
        "OPEN": None,
        "DELETED": "removed",
        "WITHHELD": "disabled",
        "LABELED": "labelled",
        "NO_VIOLATION": "no_violation",
        "NOT_FOUND": "already_gone",
    }
