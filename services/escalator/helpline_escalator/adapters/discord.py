"""Discord's Trust & Safety partner channel: a bot token (`Authorization: Bot`), flat notifier
fields, a good-faith flag beside its statement; no withdrawal of a sent notice."""

from __future__ import annotations

from typing import Any

from helpline_escalator.adapters.base import Notice
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class DiscordAdapter(NoticeApiAdapter):
    slug = "discord"
    path = "/discord/v1/notices"
    auth = "bot"
    lookup_param = "external_reference"
    withdrawal = False  # a notice, once sent, stands
    categories = {
        "child_sexual_imagery": "child_sexual_abuse_material",
        "threats_risk_to_life": "violent_threats",
        "self_harm": "self_harm",
        "privacy_images_doxxing": "doxxing_private_information",
        "hate": "hateful_conduct",
        "impersonation": "impersonation",
        "bullying_harassment": "harassment",
        "scams": "fraud_and_scams",
        "online_reputation": "defamation",
        "school_branding_misuse": "intellectual_property",
        "other": "other",
    }
    decisions = {
        "IN_PROGRESS": None,
        "ACTION_TAKEN": "removed",
        "CONTENT_DELETED": "already_gone",
        "NO_ACTION": "no_violation",
    }

    def payload(self, notice: Notice) -> dict[str, Any]:
        return {
            "external_reference": str(notice.client_reference),
            "content_url": notice.url,
            "violation_code": self.reason_code(notice),
            "dsa_category": notice.dsa_category,
            "context": notice.explanation,
            "reporter_name": notice.notifier_name,
            "reporter_email": notice.notifier_email,
            "good_faith": True,
            "good_faith_statement": notice.good_faith_statement,
            "urgent": notice.urgency == "critical",
        }

    def followup_payload(self, count: int, message: str) -> dict[str, Any]:
        return {"reminder": count, "context": message}

    def appeal_payload(self, note: str) -> dict[str, Any]:
        return {"context": note}
