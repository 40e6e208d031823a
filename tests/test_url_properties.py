"""Properties of URL understanding over generated input: no string crashes it, the canonical
form is an https URL in its serialised form, normalising it again changes nothing, every
route in the platform data reads back as its platform, and finding URLs in text is safe and
bounded on hostile descriptions."""

from __future__ import annotations

import json
import re
import time
from importlib import resources
from typing import Any

from ada_url import URL
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpline_shared.weburl import parse_web_url
from helpline_triage.links import extract_urls, understand

DATA: dict[str, Any] = json.loads(
    (resources.files("helpline_triage") / "platforms.json").read_text(encoding="utf-8")
)
HOSTS = sorted({h for p in DATA["platforms"].values() for hs in p["hosts"].values() for h in hs})
ROUTES = [(slug, r) for slug, p in DATA["platforms"].items() for r in p["routes"]]
PLACEHOLDER = re.compile(r"\{(\w+)(?::(\w+))?\}")
SAFE_ANY = "[A-Za-z0-9_-]{1,20}"  # the `any` field also admits `?`, `#`, `\` and dot segments
QUICK = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

hosts = st.one_of(
    st.sampled_from(HOSTS),
    st.sampled_from(HOSTS).map(str.upper),
    st.sampled_from(HOSTS).map(lambda h: "www." + h),
    st.sampled_from(HOSTS).map(lambda h: h + "."),
    st.sampled_from(
        ["example.org", "m.example.org", "127.0.0.1", "[::1]", "xn--bcher-kva.example"]
    ),
)
segments = st.one_of(
    st.sampled_from(
        [
            "@fake_head",
            "p",
            "reel",
            "reels",
            "watch",
            "shorts",
            "status",
            "video",
            "comments",
            "r",
            "u",
            "user",
            "channels",
            "invite",
            "joinchat",
            "+AbC123",
            "s",
            "t",
            "share",
            "games",
            "groups",
            "users",
            "@",
            "..",
            ".",
            "",
            "%2e",
            "dQw4w9WgXcQ",
            "123456789",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9._~@+%-]{1,12}", fullmatch=True),
    st.text(max_size=8),
)
query_keys = st.sampled_from(
    [
        "v",
        "id",
        "list",
        "story_fbid",
        "fbid",
        "phone",
        "channel",
        "video",
        "u",
        "q",
        "url",
        "utm_source",
        "si",
        "s",
        "t",
        "igsh",
        "fbclid",
        "ref",
        "a",
        "b",
    ]
)
query_values = st.one_of(
    st.sampled_from(["dQw4w9WgXcQ", "123", "v123", "https://youtu.be/dQw4w9WgXcQ", "x y", ""]),
    st.text(max_size=8),
)


@st.composite
def url_like(draw: st.DrawFn) -> str:
    scheme = draw(st.sampled_from(["https://", "http://", "HTTPS://", "", "//", "https:"]))
    port = draw(st.sampled_from(["", "", ":443", ":80", ":8080"]))
    path = "/".join(draw(st.lists(segments, max_size=5)))
    pairs = draw(st.lists(st.tuples(query_keys, query_values), max_size=4))
    query = "&".join(f"{k}={v}" for k, v in pairs)
    fragment = draw(st.sampled_from(["", "#top", "#!/fake_head/status/20", "#"]))
    return f"{scheme}{draw(hosts)}{port}/{path}{'?' + query if query else ''}{fragment}"


def fill(pattern: str, draw: st.DrawFn) -> str:
    def value(m: re.Match[str]) -> str:
        field = DATA["fields"][m[2] or m[1]]
        regex = SAFE_ANY if field["pattern"] == "[^/]{1,256}" else field["pattern"]
        reserved = {".", "..", *field.get("except", ())}  # dot segments are not values
        return draw(
            st.from_regex(f"(?:{regex})", fullmatch=True).filter(
                lambda v: v.lower() not in reserved
            )
        )

    return PLACEHOLDER.sub(value, pattern.removesuffix("/**"))


@st.composite
def route_urls(draw: st.DrawFn) -> tuple[str, str, str]:
    slug, route = draw(st.sampled_from(ROUTES))
    hosts = DATA["platforms"][slug]["hosts"][route["on"]]
    url = f"https://{draw(st.sampled_from(hosts))}{fill(route['path'], draw)}"
    query = "&".join(f"{k}={fill(v, draw)}" for k, v in route.get("query", {}).items())
    return slug, route["kind"], url + (f"?{query}" if query else "")


def assert_canonical(url: str) -> None:
    info = understand(url)
    if not info.is_url:
        assert info.canonical_url is None
        assert info.platform == info.kind == "unknown"
        return
    canonical = info.canonical_url
    assert canonical is not None
    parsed = parse_web_url(canonical)
    assert parsed.protocol == "https:"
    assert URL(canonical).href == canonical
    again = understand(canonical)
    assert again.canonical_url == canonical
    assert (again.platform, again.short_link) == (info.platform, info.short_link)


@QUICK
@given(st.text())
def test_no_text_crashes_understanding(text: str) -> None:
    info = understand(text)

    assert info.url == text.strip()
    if not info.is_url and len(text.strip()) >= 8:
        assert info.reason
        assert text.strip() not in info.reason


@QUICK
@given(url_like())
def test_url_like_strings_give_idempotent_https_canonical_forms(url: str) -> None:
    assert_canonical(url)


@QUICK
@given(route_urls())
def test_every_route_reads_back_as_its_platform_and_kind(case: tuple[str, str, str]) -> None:
    slug, kind, url = case
    info = understand(url)

    assert (info.is_url, info.platform, info.kind) == (True, slug, kind)
    assert_canonical(url)


@QUICK
@given(st.text(), st.lists(url_like(), max_size=3))
def test_finding_urls_in_text_never_crashes_and_finds_only_urls(text: str, urls: list[str]) -> None:
    description = " ".join([text, *urls, text])

    found = extract_urls(description)

    assert len(found) == len(set(found))
    for url in found:
        assert understand(url).is_url


@QUICK
@given(route_urls(), st.sampled_from(["{} ", "({})", "see {}.", "<{}>", '"{}",', "[x]({})!"]))
def test_a_pasted_platform_url_is_found_whole(case: tuple[str, str, str], frame: str) -> None:
    url = case[2]
    assume(url[-1] not in ".,;:!?'*")  # a handle ending in a full stop ends the sentence

    assert extract_urls(frame.format(url) + " and again " + url) == [url]


def test_hostile_descriptions_are_handled_quickly() -> None:
    hostile = [
        "(" * 10_000,
        ")" * 10_000,
        "https://" + "a." * 4_995,
        "tiktok.com/" * 909,
        "x.com " * 1_666,
        "https://x.com/" + "(" * 4_000 + ")" * 5_000,
        "www." * 2_500,
        "a@tiktok.com " * 769,
        "https://" * 1_250,
        "\u00e9" * 10_000,
    ]
    for text in hostile:
        started = time.perf_counter()
        extract_urls(text)
        understand(text)
        assert time.perf_counter() - started < 1.0
