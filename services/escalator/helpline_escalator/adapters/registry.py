"""The explicit map from platform slug to adapter class: one per platform triage
recognises. Ten take notices over an API (`NoticeApiAdapter`); WhatsApp, Telegram and
Roblox offer none and are manual channels (`ManualChannelAdapter`)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from helpline_escalator.adapters.base import PlatformAdapter
from helpline_escalator.adapters.discord import DiscordAdapter
from helpline_escalator.adapters.facebook import FacebookAdapter
from helpline_escalator.adapters.instagram import InstagramAdapter
from helpline_escalator.adapters.manual import ManualChannelAdapter
from helpline_escalator.adapters.notice_api import NoticeApiAdapter
from helpline_escalator.adapters.reddit import RedditAdapter
from helpline_escalator.adapters.roblox import RobloxAdapter
from helpline_escalator.adapters.snapchat import SnapchatAdapter
from helpline_escalator.adapters.telegram import TelegramAdapter
from helpline_escalator.adapters.threads import ThreadsAdapter
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.adapters.twitch import TwitchAdapter
from helpline_escalator.adapters.whatsapp import WhatsAppAdapter
from helpline_escalator.adapters.x import XAdapter
from helpline_escalator.adapters.youtube import YouTubeAdapter
from helpline_escalator.platform_settings import PlatformSettings

NOTICE_APIS: dict[str, type[NoticeApiAdapter]] = {
    cls.slug: cls
    for cls in (
        TikTokAdapter,
        InstagramAdapter,
        FacebookAdapter,
        ThreadsAdapter,
        YouTubeAdapter,
        XAdapter,
        SnapchatAdapter,
        DiscordAdapter,
        RedditAdapter,
        TwitchAdapter,
    )
}
MANUAL_CHANNELS: dict[str, type[ManualChannelAdapter]] = {
    cls.slug: cls for cls in (WhatsAppAdapter, TelegramAdapter, RobloxAdapter)
}
ADAPTERS: dict[str, type[NoticeApiAdapter] | type[ManualChannelAdapter]] = {
    **NOTICE_APIS,
    **MANUAL_CHANNELS,
}


def build_adapters(
    clients: Callable[[str], aiohttp.ClientSession],
    platforms: str | dict[str, PlatformSettings],
) -> dict[str, PlatformAdapter]:
    """One adapter per platform. An API platform gets the client `clients(slug)` gives it
    and its settings from `platforms` (or, given a base URL, the simulator's defaults);
    a manual channel gets no client: it never calls anything."""
    adapters: dict[str, PlatformAdapter] = {}
    for slug, cls in NOTICE_APIS.items():
        target = platforms if isinstance(platforms, str) else platforms[slug]
        adapters[slug] = cls(clients(slug), target)
    for slug, manual in MANUAL_CHANNELS.items():
        adapters[slug] = manual(None, None if isinstance(platforms, str) else platforms[slug])
    return adapters
