"""WhatsApp: no notice API (messages are end-to-end encrypted; reports go through the app or
its contact form), so a manual channel."""

from __future__ import annotations

from helpline_escalator.adapters.manual import ManualChannelAdapter


class WhatsAppAdapter(ManualChannelAdapter):
    slug = "whatsapp"
    where = "https://www.whatsapp.com/contact (or in the app: the chat or channel > Report)"
    how = (
        "For a channel or a group invite link, report the channel or group; for a "
        "message, ask the school to report it from the device that received it."
    )
    categories = {
        "child_sexual_imagery": "child_abuse",
        "threats_risk_to_life": "violence",
        "self_harm": "self_harm",
        "privacy_images_doxxing": "privacy",
        "hate": "hate_speech",
        "impersonation": "fake_account",
        "bullying_harassment": "harassment",
        "scams": "scam",
        "online_reputation": "defamation",
        "school_branding_misuse": "intellectual_property",
        "other": "other",
    }
