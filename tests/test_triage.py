"""Triage: URL normalisation, platform from host, rule-based classification and the pure,
deterministic `Triage.triage` of an opened case."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from faststream.kafka import KafkaBroker

from helpline_shared.consumer import DeadLetters
from helpline_shared.events import CaseOpenedV1, HarmType, derive_id
from helpline_triage.rules import RuleSet
from helpline_triage.urls import UrlRules
from helpline_triage.usecase import Triage

RULES = RuleSet.load()
URLS = UrlRules(RULES.data["platforms"], RULES.data["tracking_parameters"])


# --- URL normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://www.tiktok.com/@a/video/1", "https://tiktok.com/@a/video/1"),
        ("https://m.facebook.com/some.page", "https://facebook.com/some.page"),
        ("https://mobile.twitter.com/a/status/1", "https://twitter.com/a/status/1"),
        (
            "https://www.tiktok.com/@a/video/1?is_from_webapp=1&sender_device=pc",
            "https://tiktok.com/@a/video/1",
        ),
        (
            "https://www.instagram.com/p/Cabc/?igshid=MzRlODBiNWFlZA==",
            "https://instagram.com/p/Cabc",
        ),
        (
            "https://example.org/page?utm_source=x&utm_medium=y&utm_campaign=z&id=7",
            "https://example.org/page?id=7",
        ),
        ("https://example.org/page?UTM_SOURCE=x&id=7", "https://example.org/page?id=7"),
        ("https://youtu.be/abc?si=share123", "https://youtu.be/abc"),
        ("https://www.youtube.com/watch?v=abc&feature=share", "https://youtube.com/watch?v=abc"),
        ("https://example.org/page?b=2&a=1", "https://example.org/page?a=1&b=2"),
        ("https://example.org/page#comments", "https://example.org/page"),
        ("https://example.org/page/", "https://example.org/page"),
        ("https://example.org", "https://example.org/"),
        ("https://example.org/", "https://example.org/"),
        ("HTTPS://WWW.Example.ORG/Some/Path", "https://example.org/Some/Path"),
        ("http://example.org/page", "https://example.org/page"),
        ("http://example.org:80/page", "https://example.org/page"),
        ("https://example.org:443/page", "https://example.org/page"),
        ("https://example.org:8443/page", "https://example.org:8443/page"),
        ("https://www.tiktok.com./@a", "https://tiktok.com/@a"),
        ("  https://example.org/page  ", "https://example.org/page"),
        # A two-label host keeps its first label: `m.co` is not a `m.` prefix of `co`.
        ("https://m.co/a", "https://m.co/a"),
    ],
)
def test_normalize(url: str, normalized: str) -> None:
    assert URLS.normalize(url) == normalized


def test_the_same_content_reported_differently_normalises_equal() -> None:
    variants = [
        "https://www.tiktok.com/@fake_head/video/7301234567890123456",
        "http://tiktok.com/@fake_head/video/7301234567890123456/",
        "https://m.tiktok.com/@fake_head/video/7301234567890123456?is_from_webapp=1",
        "https://WWW.TIKTOK.COM/@fake_head/video/7301234567890123456?utm_source=copy#top",
    ]

    assert {URLS.normalize(v) for v in variants} == {
        "https://tiktok.com/@fake_head/video/7301234567890123456"
    }


def test_path_case_and_meaningful_parameters_are_kept() -> None:
    assert URLS.normalize("https://x.com/SomeUser?lang=en") == "https://x.com/SomeUser?lang=en"
    assert URLS.normalize("https://x.com/SomeUser") != URLS.normalize("https://x.com/someuser")


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(1)", "ftp://example.org/file", "https://./no-host", "no scheme at all", ""],
)
def test_normalize_refuses_non_web_urls(url: str) -> None:
    with pytest.raises(ValueError, match=r"absolute http|browser can open|host name"):
        URLS.normalize(url)


# --- Platform from host ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "platform"),
    [
        ("https://tiktok.com/@a", "tiktok"),
        ("https://www.tiktok.com/@a", "tiktok"),
        ("https://vm.tiktok.com/ZM123", "tiktok"),
        ("https://vt.tiktok.com/ZS456", "tiktok"),
        ("https://instagram.com/p/abc", "instagram"),
        ("https://instagr.am/p/abc", "instagram"),
        ("https://m.facebook.com/page", "facebook"),
        ("https://facebook.com/page", "facebook"),
        ("https://fb.watch/abc", "facebook"),
        ("https://youtube.com/watch?v=abc", "youtube"),
        ("https://youtu.be/abc", "youtube"),
        ("https://music.youtube.com/watch?v=abc", "youtube"),
        ("https://twitter.com/a/status/1", "x"),
        ("https://x.com/a/status/1", "x"),
        ("https://t.co/abc", "x"),
        ("https://snapchat.com/add/someone", "snapchat"),
        ("https://story.snapchat.com/s/abc", "snapchat"),
        ("https://example.org/page", "unknown"),
        ("https://nottiktok.com/@a", "unknown"),
        ("https://tiktok.com.evil.example/@a", "unknown"),
        ("https://com/", "unknown"),
    ],
)
def test_platform(url: str, platform: str) -> None:
    assert URLS.platform(url) == platform
    assert URLS.platform(URLS.normalize(url)) == platform


def test_platform_ignores_host_case_and_port() -> None:
    assert URLS.platform("https://VM.TikTok.com:8443/ZM123") == "tiktok"


# --- Classification ----------------------------------------------------------------------


def test_declared_issue_types_are_kept_once_and_fire_declared_rules() -> None:
    c = RULES.classify(
        "Nothing in the words here.",
        ["school_branding_misuse", "bullying_harassment", "school_branding_misuse"],
    )

    assert c.harm_types == ["bullying_harassment", "school_branding_misuse"]
    assert c.rules_fired == ["declared.school_branding_misuse", "declared.bullying_harassment"]
    assert c.urgency == "normal"
    assert c.route == "platform"


@pytest.mark.parametrize(
    ("description", "harm_type", "rule_id"),
    [
        (
            "They are spreading lies about our head teacher.",
            "online_reputation",
            "reputation.keywords",
        ),
        ("A pupil is being bullied in the comments.", "bullying_harassment", "bullying.keywords"),
        ("Someone is impersonating the head teacher.", "impersonation", "impersonation.keywords"),
        ("A FAKE ACCOUNT posts as our deputy.", "impersonation", "impersonation.keywords"),
        ("They use our school logo on merchandise.", "school_branding_misuse", "branding.keywords"),
        ("They posted her home address.", "privacy_images_doxxing", "privacy.keywords"),
        ("Nude pictures of a pupil are circulating.", "child_sexual_imagery", "csam.keywords"),
        ("He says he will kill the teacher.", "threats_risk_to_life", "threat.keywords"),
        ("A post threatens the school.", "threats_risk_to_life", "threat.keywords"),
    ],
)
def test_keyword_rules_fire_with_their_ids(
    description: str, harm_type: HarmType, rule_id: str
) -> None:
    c = RULES.classify(description, [])

    assert c.harm_types == [harm_type]
    assert rule_id in c.rules_fired
    assert "default.harm_type" not in c.rules_fired


def test_keywords_match_at_word_boundaries_only() -> None:
    # "skill" contains "kill" but not at a word boundary: no threat.
    c = RULES.classify("A video mocking a pupil's football skill.", [])

    assert "threats_risk_to_life" not in c.harm_types
    assert "threat.keywords" not in c.rules_fired
    assert c.urgency != "critical"
    assert c.harm_types == ["bullying_harassment"]


def test_several_rules_fire_together() -> None:
    c = RULES.classify("A fake account is bullying pupils and posted a home address.", [])

    assert c.harm_types == ["bullying_harassment", "impersonation", "privacy_images_doxxing"]
    assert c.rules_fired == [
        "bullying.keywords",
        "impersonation.keywords",
        "privacy.keywords",
        "urgency.high",
    ]
    assert c.urgency == "high"
    assert c.route == "platform"


def test_child_sexual_imagery_goes_to_the_hotline_at_critical_urgency() -> None:
    c = RULES.classify("An indecent image of a pupil is being shared.", [])

    assert "child_sexual_imagery" in c.harm_types
    assert c.route == "hotline"
    assert c.urgency == "critical"
    assert c.rules_fired == ["csam.keywords", "urgency.critical", "route.hotline"]


def test_declared_child_sexual_imagery_goes_to_the_hotline_too() -> None:
    c = RULES.classify("Please look at this account.", ["child_sexual_imagery"])

    assert c.route == "hotline"
    assert c.urgency == "critical"


def test_threats_are_critical_but_still_go_to_the_platform() -> None:
    c = RULES.classify("They posted a bomb threat against the school.", [])

    assert c.harm_types == ["threats_risk_to_life"]
    assert c.urgency == "critical"
    assert c.route == "platform"


def test_default_harm_type_when_nothing_matches() -> None:
    c = RULES.classify("Please look at this account.", [])

    assert c.harm_types == [RULES.data["default_harm_type"]] == ["online_reputation"]
    assert c.rules_fired == ["default.harm_type"]
    assert c.urgency == "normal"
    assert c.route == "platform"


def test_classification_is_deterministic() -> None:
    text = "A fake profile threatens to share nude images and our home address."
    first = RULES.classify(text, ["impersonation"])

    assert RuleSet.load().classify(text, ["impersonation"]) == first
    assert RULES.classify(text, ["impersonation"]) == first


# --- Triage.triage -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def triage() -> Triage:
    # triage() is pure: the broker is never connected and no dead letter is written.
    return Triage(KafkaBroker(), DeadLetters("triage", max_ratio=0.5, window=10), RULES)


def case(
    description: str = "A fake account is impersonating our head teacher.",
    urls: list[str] | None = None,
    issue_types: list[HarmType] | None = None,
    case_id: uuid.UUID | None = None,
) -> CaseOpenedV1:
    case_id = case_id or uuid.uuid4()
    return CaseOpenedV1(
        event_id=derive_id("case.opened", case_id),
        case_id=case_id,
        source="test",
        report_id=f"report-{case_id}",
        received_at=datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
        description=description,
        urls=urls
        if urls is not None
        else [
            "https://www.tiktok.com/@fake_head/video/1?is_from_webapp=1",
            "https://www.instagram.com/fake_staff/",
        ],
        issue_types=issue_types or [],
    )


def test_triage_is_deterministic(triage: Triage) -> None:
    opened = case()

    first = triage.triage(opened)
    second = triage.triage(opened)

    assert first.event_id == second.event_id == derive_id("case.triaged", opened.case_id)
    assert first.case_id == opened.case_id
    assert first.received_at == opened.received_at
    assert [u.url_id for u in first.urls] == [u.url_id for u in second.urls]
    assert first.harm_types == second.harm_types == ["impersonation"]
    assert first.urgency == second.urgency == "high"
    assert first.rules_fired == second.rules_fired
    assert first.urls == second.urls


def test_triage_on_a_fresh_triage_instance_gives_the_same_ids(triage: Triage) -> None:
    opened = case()
    other = Triage(KafkaBroker(), DeadLetters("triage", max_ratio=0.5, window=10), RuleSet.load())

    assert other.triage(opened).event_id == triage.triage(opened).event_id
    assert [u.url_id for u in other.triage(opened).urls] == [
        u.url_id for u in triage.triage(opened).urls
    ]


def test_different_cases_get_different_ids(triage: Triage) -> None:
    a = triage.triage(case())
    b = triage.triage(case())

    assert a.event_id != b.event_id
    assert {u.url_id for u in a.urls}.isdisjoint({u.url_id for u in b.urls})


def test_triaged_urls_carry_platform_and_route(triage: Triage) -> None:
    triaged = triage.triage(case())

    assert [(u.url, u.normalized_url, u.platform, u.route) for u in triaged.urls] == [
        (
            "https://www.tiktok.com/@fake_head/video/1?is_from_webapp=1",
            "https://tiktok.com/@fake_head/video/1",
            "tiktok",
            "platform",
        ),
        (
            "https://www.instagram.com/fake_staff/",
            "https://instagram.com/fake_staff",
            "instagram",
            "platform",
        ),
    ]
    assert triaged.route == "platform"
    assert triaged.rejected_urls == []
    version = RULES.version
    assert triaged.rules_fired == [
        f"{version}:impersonation.keywords",
        f"{version}:urgency.high",
    ]


def test_duplicate_urls_in_a_case_give_one_triaged_url(triage: Triage) -> None:
    opened = case(
        urls=[
            "https://www.tiktok.com/@fake_head/video/1?is_from_webapp=1&sender_device=pc",
            "https://tiktok.com/@fake_head/video/1?utm_source=copy",
            "http://m.tiktok.com/@fake_head/video/1/#comments",
        ]
    )

    triaged = triage.triage(opened)

    assert len(triaged.urls) == 1
    only = triaged.urls[0]
    assert only.url == opened.urls[0]  # the first report of it is kept as reported
    assert only.normalized_url == "https://tiktok.com/@fake_head/video/1"
    assert only.url_id == derive_id("url", opened.case_id, only.normalized_url)


def test_unknown_host_is_routed_manually(triage: Triage) -> None:
    triaged = triage.triage(
        case(urls=["https://forum.example.org/thread/9", "https://x.com/fake/status/1"])
    )

    assert [(u.platform, u.route) for u in triaged.urls] == [
        ("unknown", "manual"),
        ("x", "platform"),
    ]
    assert triaged.route == "platform"


def test_hotline_cases_keep_the_hotline_route_for_every_url(triage: Triage) -> None:
    triaged = triage.triage(
        case(
            description="Naked pictures of a pupil are being shared.",
            urls=["https://www.tiktok.com/@someone/video/2", "https://forum.example.org/t/3"],
        )
    )

    assert triaged.route == "hotline"
    assert triaged.urgency == "critical"
    assert [u.route for u in triaged.urls] == ["hotline", "hotline"]
    assert [u.platform for u in triaged.urls] == ["tiktok", "unknown"]


def test_unparseable_urls_wait_for_a_person_not_dropped(triage: Triage) -> None:
    triaged = triage.triage(
        case(urls=["javascript:alert(1)", "https://x.com/fake", "ftp://files.example/x"])
    )

    assert [(u.url, u.route) for u in triaged.urls] == [
        ("javascript:alert(1)", "manual"),
        ("https://x.com/fake", "platform"),
        ("ftp://files.example/x", "manual"),
    ]
    assert [bool(u.reason) for u in triaged.urls] == [True, False, True]
    assert triaged.rejected_urls == []


def test_declared_issue_types_reach_the_triaged_case(triage: Triage) -> None:
    triaged = triage.triage(
        case(description="Please look at this.", issue_types=["privacy_images_doxxing"])
    )

    assert triaged.harm_types == ["privacy_images_doxxing"]
    assert triaged.urgency == "high"
    assert f"{RULES.version}:declared.privacy_images_doxxing" in triaged.rules_fired


def test_a_url_too_long_once_normalised_waits_for_a_person_and_stays_indexable(
    triage: Triage,
) -> None:
    long_url = "https://www.tiktok.com/" + "学校" * 1000  # 2,023 characters, ~18 KB encoded
    ok = "https://www.instagram.com/ok_account/"
    out = triage.triage(case(urls=[long_url, ok]))
    by_url = {u.url: u for u in out.urls}
    assert by_url[long_url].route == "manual"
    assert "normalised" in (by_url[long_url].reason or "")
    assert len(by_url[long_url].normalized_url.encode()) < 2704
    assert by_url[ok].route == "platform"
