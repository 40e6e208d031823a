"""Roblox: no notice API for helplines (reports go through its illegal-content form or the in-
experience Report Abuse), so a manual channel."""

from __future__ import annotations

from helpline_escalator.adapters.manual import ManualChannelAdapter


class RobloxAdapter(ManualChannelAdapter):
    slug = "roblox"
    where = "https://www.roblox.com/illegal-content-reporting"
    how = "Give the user's profile or experience URL and, for chat, the time it happened."
    categories = {
        "child_sexual_imagery": "child_endangerment",
        "threats_risk_to_life": "threats_of_violence",
        "self_harm": "suicide_self_harm",
        "privacy_images_doxxing": "sharing_personal_information",
        "hate": "discrimination_and_hate",
        "impersonation": "impersonation",
        "bullying_harassment": "bullying",
        "scams": "scam",
        "online_reputation": "defamation",
        "school_branding_misuse": "intellectual_property",
        "other": "other",
    }
