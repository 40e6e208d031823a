"""Telegram: no notice API for helplines (reports go by email or in the app), so a manual
channel."""

from __future__ import annotations

from helpline_escalator.adapters.manual import ManualChannelAdapter


class TelegramAdapter(ManualChannelAdapter):
    slug = "telegram"
    where = (
        "abuse@telegram.org (illegal content in the EU: https://telegram.org/support; or "
        "in the app: the message, channel or group > Report)"
    )
    how = "Put the reason code in the subject line."
    categories = {
        "child_sexual_imagery": "child_abuse",
        "threats_risk_to_life": "violence",
        "self_harm": "self_harm",
        "privacy_images_doxxing": "personal_data",
        "hate": "hate_speech",
        "impersonation": "fake_account",
        "bullying_harassment": "harassment",
        "scams": "scam",
        "online_reputation": "defamation",
        "school_branding_misuse": "copyright_and_trademark",
        "other": "other",
    }
