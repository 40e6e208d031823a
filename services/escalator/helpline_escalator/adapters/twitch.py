"""Twitch's notice channel (Helix style): `Client-Id` plus a bearer token, the notice wrapped
in `data`."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class TwitchAdapter(NoticeApiAdapter):
    slug = "twitch"
    path = "/twitch/v1/notices"
    auth = "client_id_bearer"
    lookup_param = "external_id"
    categories = {
        "child_sexual_imagery": "child_sexual_exploitation",
        "threats_risk_to_life": "violence_and_threats",
        "self_harm": "self_destructive_behaviour",
        "privacy_images_doxxing": "doxxing",
        "hate": "hateful_conduct",
        "impersonation": "impersonation",
        "bullying_harassment": "harassment",
        "scams": "fraud",
        "online_reputation": "defamation",
        "school_branding_misuse": "trademark",
        "other": "other",
    }
    decisions = {
        "OPEN": None,
        "ACTIONED": "removed",
        "CONTENT_UNAVAILABLE": "already_gone",
        "NO_VIOLATION": "no_violation",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "data": {
                "external_id": str(notice.client_reference),
                "target_url": notice.url,
                "reason": self.reason_code(notice),
                "dsa_category": notice.dsa_category,
                "description": notice.explanation,
                "notifier": {"name": notice.notifier_name, "email": notice.notifier_email},
                "good_faith_statement": notice.good_faith_statement,
            }
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"data": {"follow_up": count, "description": message}}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"data": {"description": note}}
