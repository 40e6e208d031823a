"""Parsing reported URLs the way browsers do (the WHATWG URL Standard, via `ada-url`).

A URL is read exactly as a browser would read it, so `http://evil.com\\@tiktok.com/x` has the
host `evil.com` here as it does in a browser. Errors are fixed sentences: they never repeat
the submitted value (a URL can carry an email address or other personal data).
"""

from __future__ import annotations

from ada_url import URL, HostType

MAX_HOST_LENGTH = 253
MAX_LABEL_LENGTH = 63


def parse_web_url(value: str) -> URL:
    """The parsed absolute http(s) URL; raises ValueError with a reason that echoes nothing."""
    try:
        url = URL(value)
    except ValueError:
        # ada refuses invalid ports, forbidden host code points, bad IP literals and more.
        raise ValueError("is not a URL a browser can open (check the host name and port)") from None
    if url.protocol not in ("http:", "https:"):
        raise ValueError("must be an absolute http or https URL")
    if url.username or url.password:
        raise ValueError("must not carry a user name or password before the host")
    if url.host_type == HostType.DEFAULT:
        _check_domain(url.hostname)
    return url


def _check_domain(hostname: str) -> None:
    name = hostname.removesuffix(".")  # one trailing dot is a fully qualified name
    if not name or len(name) > MAX_HOST_LENGTH:
        raise ValueError("must have a host name of 1 to 253 characters")
    if any(not label or len(label) > MAX_LABEL_LENGTH for label in name.split(".")):
        raise ValueError("has an empty or over-long label in its host name")
