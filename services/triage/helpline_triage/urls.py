"""URL normalisation and platform identification from the host.

Normalising makes the same content reported twice (tracking parameters, `www.`/`m.`
prefixes, fragments, trailing slashes, letter case of scheme and host) compare equal, so a
URL is never escalated twice for one case.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_STRIPPED_PREFIXES = ("www.", "m.", "mobile.", "web.")


class UrlRules:
    def __init__(self, platforms: dict[str, list[str]], tracking: list[str]) -> None:
        self._hosts = {host: slug for slug, hosts in platforms.items() for host in hosts}
        self._tracking = frozenset(tracking)

    def normalize(self, url: str) -> str:
        """Canonical form of an http(s) URL; raises ValueError when it has no host."""
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
        if parts.scheme.lower() not in ("http", "https") or not host:
            raise ValueError("not an absolute http(s) URL")
        for prefix in _STRIPPED_PREFIXES:
            if host.startswith(prefix) and host.count(".") >= 2:
                host = host.removeprefix(prefix)
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        if parts.port and parts.port not in (80, 443):
            host = f"{host}:{parts.port}"
        query = urlencode(
            sorted(
                (k, v)
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
                if k.lower() not in self._tracking
            )
        )
        path = parts.path.rstrip("/") or "/"
        return urlunsplit(("https", host, path, query, ""))

    def platform(self, normalized: str) -> str:
        """Platform slug for the URL's host or any parent domain; 'unknown' if none."""
        host = (urlsplit(normalized).hostname or "").lower()
        labels = host.split(".")
        for i in range(len(labels) - 1):
            slug = self._hosts.get(".".join(labels[i:]))
            if slug:
                return slug
        return "unknown"
