"""The explicit map from platform slug to adapter factory."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from helpline_escalator.adapters.base import PlatformAdapter
from helpline_escalator.adapters.facebook import FacebookAdapter
from helpline_escalator.adapters.instagram import InstagramAdapter
from helpline_escalator.adapters.notice_api import NoticeApiAdapter
from helpline_escalator.adapters.snapchat import SnapchatAdapter
from helpline_escalator.adapters.tiktok import TikTokAdapter
from helpline_escalator.adapters.x import XAdapter
from helpline_escalator.adapters.youtube import YouTubeAdapter

ADAPTERS: dict[str, type[NoticeApiAdapter]] = {
    cls.slug: cls
    for cls in (
        TikTokAdapter,
        InstagramAdapter,
        FacebookAdapter,
        YouTubeAdapter,
        XAdapter,
        SnapchatAdapter,
    )
}


def build_adapters(
    clients: Callable[[str], aiohttp.ClientSession], base_url: str
) -> dict[str, PlatformAdapter]:
    """One adapter per automated platform, each with the client `clients(slug)` gives it."""
    return {slug: cls(clients(slug), base_url) for slug, cls in ADAPTERS.items()}
