"""Instagram's notice channel: Meta's shape (`meta.py`), its own endpoint and reason codes."""

from __future__ import annotations

from helpline_escalator.adapters.meta import MetaAdapter


class InstagramAdapter(MetaAdapter):
    slug = "instagram"
    path = "/instagram/v1/notices"
    categories = {
        "child_sexual_imagery": "child_sexual_exploitation",
        "threats_risk_to_life": "violence_or_threat",
        "self_harm": "suicide_or_self_injury",
        "privacy_images_doxxing": "privacy_violation",
        "hate": "hate_speech_or_symbols",
        "impersonation": "pretending_to_be_someone",
        "bullying_harassment": "bullying_or_harassment",
        "scams": "scam_or_fraud",
        "online_reputation": "defamation",
        "school_branding_misuse": "intellectual_property_trademark",
        "other": "something_else",
    }
