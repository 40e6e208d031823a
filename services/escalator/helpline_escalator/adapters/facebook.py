"""Facebook's (Meta) partner notice channel; Meta's vocabulary, its own endpoint."""

from __future__ import annotations

from helpline_escalator.adapters.instagram import META_CATEGORIES, META_DECISIONS
from helpline_escalator.adapters.notice_api import NoticeApiAdapter


class FacebookAdapter(NoticeApiAdapter):
    slug = "facebook"
    path = "/facebook/v1/notices"
    categories = META_CATEGORIES
    default_category = "other"
    decisions = META_DECISIONS  # type: ignore[assignment]
