"""URL normalisation and platform identification from the host.

URLs are read by the WHATWG rules browsers use (`helpline_shared.weburl`), so the host that
decides the platform is the host a browser would visit. Normalising makes the same content
reported twice (tracking parameters, `www.`/`m.` prefixes, fragments, trailing slashes,
letter case of scheme and host, default ports, dot segments) compare equal, so a URL is
never escalated twice for one case.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from ada_url import URL, HostType

from helpline_shared.weburl import parse_web_url

_STRIPPED_PREFIXES = ("www.", "m.", "mobile.", "web.")


class UrlRules:
    def __init__(self, platforms: dict[str, list[str]], tracking: list[str]) -> None:
        self._hosts = {host: slug for slug, hosts in platforms.items() for host in hosts}
        self._tracking = frozenset(tracking)

    def normalize(self, url: str) -> str:
        """Canonical form of an http(s) URL; raises ValueError (echoing nothing) otherwise."""
        parts = parse_web_url(url.strip())
        host = parts.hostname
        if parts.host_type == HostType.DEFAULT:
            host = host.removesuffix(".")
            for prefix in _STRIPPED_PREFIXES:
                if host.startswith(prefix) and host.count(".") >= 2:
                    host = host.removeprefix(prefix)
        if parts.port not in ("", "80", "443"):  # every URL becomes https
            host = f"{host}:{parts.port}"
        query = urlencode(
            sorted(
                (k, v)
                for k, v in parse_qsl(parts.search.removeprefix("?"), keep_blank_values=True)
                if k.lower() not in self._tracking
            )
        )
        path = parts.pathname.rstrip("/") or "/"
        return f"https://{host}{path}{'?' + query if query else ''}"

    def platform(self, normalized: str) -> str:
        """Platform slug for the URL's host or any parent domain; 'unknown' if none."""
        try:
            parts = URL(normalized.strip())
        except ValueError:
            return "unknown"
        if parts.host_type != HostType.DEFAULT:
            return "unknown"
        labels = parts.hostname.removesuffix(".").split(".")
        for i in range(len(labels) - 1):
            slug = self._hosts.get(".".join(labels[i:]))
            if slug:
                return slug
        return "unknown"
