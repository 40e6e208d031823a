"""How each platform triage recognises is written for people (emails, pages, reports)."""

from __future__ import annotations

PLATFORM_NAMES: dict[str, str] = {
    "discord": "Discord",
    "facebook": "Facebook",
    "instagram": "Instagram",
    "reddit": "Reddit",
    "roblox": "Roblox",
    "snapchat": "Snapchat",
    "telegram": "Telegram",
    "threads": "Threads",
    "tiktok": "TikTok",
    "twitch": "Twitch",
    "whatsapp": "WhatsApp",
    "x": "X",
    "youtube": "YouTube",
}
