"""URLs pasted into free text (a report's description), found without fetching anything.

`extract_urls` returns, in order of appearance and without repeats, every `http(s)://` URL in
the text and every link on a known platform's host written without a scheme
(`tiktok.com/@name`, `www.instagram.com/p/X`, `discord.gg/X`, but not a bare `tiktok.com`),
the latter with `https://`.
Punctuation that ends a sentence or closes a bracket opened before the URL is not part of
it; an e-mail address is not a link. Only what a browser could open is returned. The work
is linear in the text: it is split on white space once and each piece is looked at once.
"""

from __future__ import annotations

import re

from helpline_shared.weburl import parse_web_url
from helpline_triage.platform_urls import platform_table

_SCHEME = re.compile(r"https?://", re.IGNORECASE)
_PIECE = re.compile(r"[^\s<>\"`\u00ab\u00bb\u201c\u201d\u2018\u2019\u3001\u3002]+")
_TRAILING = ".,;:!?'*\u2026"
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}
_LEADING = "([{<'*"
_MAX_URL_CHARS = 4096


def extract_urls(text: str) -> list[str]:
    """The URLs in `text`, in order, each once; never raises for any string."""
    found: dict[str, None] = {}
    for piece in _PIECE.findall(text):
        url = _url_in(piece)
        if url is not None and url not in found and _readable(url):
            found[url] = None
    return list(found)


def _url_in(piece: str) -> str | None:
    scheme = _SCHEME.search(piece)
    if scheme is not None:
        return _trim(piece[scheme.start() :])
    bare = _trim(piece.lstrip(_LEADING))
    host = re.split(r"[/?#:]", bare, maxsplit=1)[0].lower()
    if "@" in host or "." not in host:
        return None
    if platform_table().platform_of(host) is None:
        return None
    if len(bare) <= len(host) + 1:  # "on tiktok.com" names a site, not a link
        return None
    return "https://" + bare


def _trim(candidate: str) -> str:
    """Without sentence punctuation and unbalanced closing brackets at the end."""
    url = candidate[:_MAX_URL_CHARS]
    while url:
        last = url[-1]
        unbalanced = last in _CLOSERS and url.count(last) > url.count(_CLOSERS[last])
        if last not in _TRAILING and not unbalanced:
            break
        url = url[:-1]
    return url


def _readable(url: str) -> bool:
    try:
        parse_web_url(url)
    except ValueError:
        return False
    return True
