"""Threads' notice channel: Meta's shape (`meta.py`), its own endpoint, Meta's
shared reason codes."""

from __future__ import annotations

from helpline_escalator.adapters.meta import MetaAdapter


class ThreadsAdapter(MetaAdapter):
    slug = "threads"
    path = "/threads/v1/notices"
