"""What a reported URL points at: its platform, the kind of content, and one canonical form.

`understand` never raises and never fetches anything. A URL is read as a browser reads it
(WHATWG, `helpline_shared.weburl`); the platform comes from its host (or a parent domain),
the kind and canonical form from the platform's routes in `platforms.json` (see
`platform_urls`). The canonical form is an https URL a practitioner can open, and the same
content gives the same canonical form across hosts (`instagr.am`, `twitter.com`,
`threads.net`, `fb.com`, `m.`/`old.`/`music.` hosts), expandable short links (`youtu.be/ID`,
`redd.it/ID`, `discord.gg/CODE`), tracking parameters, letter case of hosts and of the
handles a platform treats as case-insensitive, trailing slashes, fragments and escapes
(`%77atch`, `%40user`: an escaped letter, digit, `-._~` or `@` in the path is decoded).
Understanding a canonical URL again gives the same canonical URL.

Choices where platforms are ambiguous:
- Content with a global id keys on that id alone: a YouTube video id (`watch?v=`, `shorts/`,
  `live/`, `embed/`, `youtu.be/`) becomes `https://www.youtube.com/watch?v=ID`; an X status
  id becomes `https://x.com/i/status/ID` whoever the path names; a TikTok video id becomes
  `https://www.tiktok.com/@_/video/ID` (TikTok ignores the handle); an Instagram shortcode
  becomes `https://www.instagram.com/p/CODE` whether given as `/p/`, `/reel/`, `/reels/`,
  `/tv/` or under a username (a reel and a post with one shortcode are the same media); a
  Threads post becomes `https://www.threads.com/t/CODE`; a Reddit post becomes
  `https://www.reddit.com/comments/ID` and a comment `.../comments/POST/_/COMMENT`.
- The kind says what the reported form shows: a YouTube `/live/ID` is `live` and
  `/shorts/ID` is `video`, although both canonicalise to `watch?v=ID` (understood again,
  that is `video`); an Instagram `/reel/` is `video`, a `/p/` is `post`.
- A Twitch channel page is `channel` (whether it is live cannot be told without fetching);
  `t.me/NAME` is `channel` (users, bots and channels share one namespace); a Discord invite
  and a WhatsApp chat invite are `group`; a Discord message link is `comment`; Facebook
  numeric profiles and pages (`profile.php?id=`, `/people/NAME/ID`, `/ID`) all become
  `profile.php?id=ID`; a Facebook reel keeps `/reel/ID` (not merged with `watch?v=`).
- Short links that only the platform can expand (`vm.tiktok.com`, `vt.tiktok.com`,
  `tiktok.com/t/`, `t.co`, `fb.watch`, `fb.me`, `facebook.com/share/`, `instagram.com/share/`,
  `snapchat.com/t/`, `reddit.com/r/SUB/s/`, `ro.blox.com`, Roblox share links) keep their
  path as given, with the host normalised and trackers removed, `short_link=True` and a
  reason: the service never fetches a reported URL.
- Redirect wrappers that carry their target (`l.facebook.com/l.php?u=`,
  `youtube.com/redirect?q=`, `google.com/url?q=`, ...) are understood as their target.
- A link on a known platform host written without a scheme (`tiktok.com/@name`) is read as
  https; anything else without `http(s)://` is not a URL.
- Other hosts get the generic form: https, host lower-case without `www.`/`m.`/`mobile.`/
  `web.`, no default port, query sorted without the common trackers (`utm_*`, `fbclid`,
  `gclid`, ...), no fragment, no trailing slash. Platforms' own trackers (`si`, `s`, `t`,
  `ref`, ...) are removed only on their platform, where they are known to be trackers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from ada_url import URL, HostType

from helpline_shared.events import UrlKind
from helpline_shared.weburl import parse_web_url
from helpline_triage.platform_urls import Platform, PlatformTable, Route, platform_table
from helpline_triage.url_text import extract_urls

__all__ = ["UrlInfo", "extract_urls", "understand"]

_STRIPPED_PREFIXES = ("www.", "m.", "mobile.", "web.")
_MAX_REDIRECTS = 3
_SLASHES = re.compile(r"/{2,}")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_PATH_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~@")
SHORT_LINK_REASON = (
    "a short link only the platform can expand: kept as given, because the service never "
    "fetches a reported URL"
)
UNKNOWN_HOST_REASON = "the host is not one of the known platforms' hosts"
IP_HOST_REASON = "the host is an IP address, not a platform's host name"


@dataclass(frozen=True)
class UrlInfo:
    """One reported URL as triage understands it; `reason` never repeats the input."""

    url: str
    is_url: bool
    platform: str
    kind: UrlKind
    canonical_url: str | None
    short_link: bool
    reason: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "is_url": self.is_url,
            "platform": self.platform,
            "kind": self.kind,
            "canonical_url": self.canonical_url,
            "short_link": self.short_link,
            "reason": self.reason,
        }


def understand(raw: str) -> UrlInfo:
    """Platform, kind and canonical form of `raw`; never raises, never fetches."""
    given = raw.strip()
    return _understand(given, given, platform_table(), 0)


def _understand(given: str, text: str, table: PlatformTable, depth: int) -> UrlInfo:
    url, problem = _parse(text, table)
    if url is None:
        return UrlInfo(given, False, "unknown", "unknown", None, False, problem)
    pairs = parse_qsl(url.search.removeprefix("?"), keep_blank_values=True)
    if url.host_type != HostType.DEFAULT:
        canonical = _generic(url, [p for p in pairs if not table.is_tracking(p[0], None)])
        return UrlInfo(given, True, "unknown", "unknown", canonical, False, IP_HOST_REASON)
    host = url.hostname.removesuffix(".")
    params = table.redirects.get((host, url.pathname.rstrip("/") or "/"))
    if params and depth < _MAX_REDIRECTS:
        for param in params:
            targets = [v for k, v in pairs if k == param]
            if len(targets) == 1:
                inner = _understand(given, targets[0].strip(), table, depth + 1)
                if inner.is_url:
                    return inner
    slug = table.platform_of(host)
    if slug is None:
        canonical = _generic(url, [p for p in pairs if not table.is_tracking(p[0], None)])
        return UrlInfo(given, True, "unknown", "unknown", canonical, False, UNKNOWN_HOST_REASON)
    platform = table.platforms[slug]
    kept = [p for p in pairs if not table.is_tracking(p[0], platform)]
    group = table.groups.get(host)
    if url.port not in ("", "80", "443") or group is None:
        why = (
            f"a URL on {slug}, on a host that serves no content triage can name"
            if group is None
            else f"a URL on {slug}, on a port the platform does not serve"
        )
        return UrlInfo(given, True, slug, "unknown", _generic(url, kept, host), False, why)
    found = _route(platform, group, url, pairs)
    if found is None:
        canonical = _generic(url, kept, group)
        why = f"a URL on {slug}, but not a form of content triage knows"
        return UrlInfo(given, True, slug, "unknown", canonical, False, why)
    route, values = found
    if route.short:
        canonical = _generic(url, kept, _short_host(host, group, table))
        return UrlInfo(given, True, slug, route.kind, canonical, True, SHORT_LINK_REASON)
    canonical = route.fill(values) if route.canonical else _generic(url, kept, group)
    note = None if route.kind != "unknown" else f"a URL on {slug}, but none of the kinds named"
    return UrlInfo(given, True, slug, route.kind, canonical, False, note)


def _parse(text: str, table: PlatformTable) -> tuple[URL | None, str]:
    """The parsed URL, or None and a reason that does not echo the text."""
    if not text:
        return None, "cannot be read as a URL: it is empty"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None, "cannot be read as a URL: it holds characters that are not text"
    if "://" not in text[:12] and not text.lower().startswith(("http:", "https:")):
        bare = text.removeprefix("//")
        host = bare.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].lower().rstrip(".")
        if host and table.platform_of(host.split(":", 1)[0]) is not None:
            text = "https://" + bare
    try:
        url = parse_web_url(text)
    except ValueError as exc:
        return None, f"cannot be read as a URL: it {exc}"
    url.pathname = _PERCENT.sub(_percent, url.pathname)
    return url, ""


def _percent(m: re.Match[str]) -> str:
    """`%77` -> `w`, `%40` -> `@`: escapes of characters a path may hold as they are are
    decoded (RFC 3986 6.2.2.2); other escapes keep upper-case hex (`%2f` -> `%2F`)."""
    char = chr(int(m.group(1), 16))
    return char if char in _PATH_SAFE else m.group().upper()


def _route(
    platform: Platform, group: str, url: URL, pairs: list[tuple[str, str]]
) -> tuple[Route, dict[str, str]] | None:
    routes = platform.routes[group]
    path = _squeeze(url.pathname)
    for route in routes:
        values = route.match(path, pairs)
        if values is not None:
            return route, values
    if url.hash.startswith("#!/"):  # old hash-bang links (twitter.com/#!/user/status/ID)
        hash_path, _, hash_query = url.hash[2:].partition("?")
        hash_pairs = parse_qsl(hash_query, keep_blank_values=True)
        for route in routes:
            if route.canonical and not route.short:
                values = route.match(_squeeze(hash_path), hash_pairs)
                if values is not None:
                    return route, values
    return None


def _squeeze(path: str) -> str:
    """The path as routes see it: no repeated or trailing slashes."""
    return _SLASHES.sub("/", path).rstrip("/") or "/"


def _strip_prefixes(host: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _STRIPPED_PREFIXES:
            if host.startswith(prefix) and host.count(".") >= 2:
                host, stripped = host.removeprefix(prefix), True
    return host


def _short_host(host: str, group: str, table: PlatformTable) -> str:
    """The short link's own host, without `www.`/`m.` when that stays in its host group."""
    bare = _strip_prefixes(host)
    return bare if table.groups.get(bare) == group else host


def _generic(url: URL, pairs: list[tuple[str, str]], host: str | None = None) -> str:
    """https, normalised host (or the given one), no default port, sorted query, no fragment."""
    if host is None:
        host = url.hostname
        if url.host_type == HostType.DEFAULT:
            host = _strip_prefixes(host.removesuffix("."))
    if url.port not in ("", "80", "443"):  # every URL becomes https
        host = f"{host}:{url.port}"
    query = urlencode(sorted(pairs))
    path = url.pathname.rstrip("/") or "/"
    return f"https://{host}{path}{'?' + query if query else ''}"
