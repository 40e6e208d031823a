"""Triage's decision for a case (`read_urls` then `decide`), pure: each URL understood and
routed, the case's fields from the rules, every harm type and route reachable from
realistic descriptions. The engine (rules) and URL understanding (links) have their own
tests; these test what the service makes of them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from helpline_shared.events import CaseOpenedV1, CaseTriagedV1, HarmType, derive_id
from helpline_triage.decision import FOUND_IN_DESCRIPTION, decide, read_urls
from helpline_triage.links import understand
from helpline_triage.rules import RuleSet

RULES = RuleSet.load()
RECEIVED = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
NOW = datetime(2026, 11, 25, 9, 31, tzinfo=UTC)
TIKTOK = "https://www.tiktok.com/@fake_head/video/7301234567890123456?is_from_webapp=1"
INSTAGRAM = "https://www.instagram.com/fake_staff/"


def case(
    description: str = "A fake account is impersonating our head teacher.",
    urls: list[str] | None = None,
    issue_types: list[HarmType] | None = None,
) -> CaseOpenedV1:
    case_id = uuid.uuid4()
    return CaseOpenedV1(
        event_id=derive_id("case.opened", case_id),
        case_id=case_id,
        source="test",
        report_id=f"report-{case_id}",
        received_at=RECEIVED,
        description=description,
        urls=[TIKTOK, INSTAGRAM] if urls is None else urls,
        issue_types=issue_types or [],
    )


def triage(opened: CaseOpenedV1, prior_reports: int = 0) -> CaseTriagedV1:
    return decide(RULES, opened, read_urls(opened), prior_reports, NOW)


def test_the_same_case_gives_the_same_event() -> None:
    opened = case()

    first, second = triage(opened), triage(opened)

    assert first == second
    assert first.event_id == derive_id("case.triaged", opened.case_id)
    assert [u.url_id for u in first.urls] == [
        derive_id("url", opened.case_id, u.normalized_url) for u in first.urls
    ]
    assert triage(case()).event_id != first.event_id


def test_each_url_carries_what_understanding_it_gave() -> None:
    triaged = triage(case())

    for u in triaged.urls:
        info = understand(u.url)
        assert (u.normalized_url, u.platform, u.kind, u.short_link) == (
            info.canonical_url,
            info.platform,
            info.kind,
            info.short_link,
        )
        assert u.origin == "urls"
        assert u.route == "platform"
        assert u.reason is None
    assert [u.platform for u in triaged.urls] == ["tiktok", "instagram"]
    assert [u.kind for u in triaged.urls] == ["video", "account"]


def test_the_case_carries_the_rules_decision_and_its_explanation() -> None:
    triaged = triage(case())

    assert triaged.rules_version == RULES.version
    assert triaged.harm_types[0] == triaged.lead_harm_type == "impersonation"
    assert triaged.rules_fired
    assert all(r.startswith(f"{RULES.version}:") for r in triaged.rules_fired)
    fired = {r.split(":", 1)[1] for r in triaged.rules_fired}
    assert {m.rule_id for m in triaged.matches} <= fired
    assert any("impersonat" in e.lower() for m in triaged.matches for e in m.evidence)
    assert triaged.decision_due_at is not None
    assert triaged.decision_due_at > RECEIVED
    assert triaged.triaged_at == NOW
    for u in triaged.urls:
        assert u.dsa_category == RULES.dsa_category("impersonation")
        assert u.reason_code == RULES.reason_code("impersonation", u.platform)
        assert u.dsa_category
        assert u.reason_code


def test_a_more_urgent_case_is_due_sooner() -> None:
    ordinary = triage(case("Pupils posted a mean video about a teacher."))
    urgent = triage(case("A boy says he will bring a knife to school tomorrow and stab someone."))

    assert urgent.urgency == "critical" != ordinary.urgency
    assert urgent.decision_due_at
    assert ordinary.decision_due_at
    assert urgent.decision_due_at < ordinary.decision_due_at


def test_the_same_content_in_other_forms_is_one_url() -> None:
    opened = case(
        urls=[
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&feature=share",
            "https://youtu.be/dQw4w9WgXcQ?si=abc",
            "https://m.youtube.com/watch?v=dQw4w9WgXcQ#t=10",
        ]
    )

    [only] = triage(opened).urls

    assert only.url == opened.urls[0]  # the first report of it is kept as reported
    assert only.platform == "youtube"


def test_urls_in_the_description_are_added_with_their_origin() -> None:
    opened = case(
        description="The fake account https://instagram.com/fake_staff also posts on "
        "https://x.com/fake_head/status/1 and https://forum.example.org/t/9",
        urls=[INSTAGRAM],
    )

    triaged = triage(opened)

    assert [(u.origin, u.platform, u.route) for u in triaged.urls] == [
        ("urls", "instagram", "platform"),
        ("description", "x", "platform"),
        ("description", "unknown", "manual"),
    ]
    assert triaged.urls[2].reason == FOUND_IN_DESCRIPTION


def test_a_reported_url_on_no_known_platform_waits_for_a_person() -> None:
    triaged = triage(case(urls=["https://forum.example.org/thread/9", TIKTOK]))

    assert [(u.platform, u.route) for u in triaged.urls] == [
        ("unknown", "manual"),
        ("tiktok", "platform"),
    ]
    assert triaged.urls[0].reason_code is None
    assert triaged.urls[0].reason == understand("https://forum.example.org/thread/9").reason
    assert "known platforms" in (triaged.urls[0].reason or "")
    assert triaged.route == "platform"


def test_unreadable_urls_wait_for_a_person_with_the_reason_not_dropped() -> None:
    triaged = triage(case(urls=["javascript:alert(1)", TIKTOK, "ftp://files.example/x"]))

    assert [(u.url, u.route) for u in triaged.urls] == [
        ("javascript:alert(1)", "manual"),
        (TIKTOK, "platform"),
        ("ftp://files.example/x", "manual"),
    ]
    assert all("cannot be read" in (u.reason or "") for u in triaged.urls[::2])
    assert triaged.rejected_urls == []


def test_a_url_too_long_once_normalised_waits_for_a_person_and_stays_indexable() -> None:
    long_url = "https://www.example.org/" + "学校" * 1000  # ~18 KB once percent-encoded
    out = triage(case(urls=[long_url, INSTAGRAM]))

    assert (out.urls[0].route, out.urls[1].route) == ("manual", "platform")
    assert "normalised" in (out.urls[0].reason or "")
    assert len(out.urls[0].normalized_url.encode()) < 2704


def test_hotline_cases_keep_the_hotline_route_for_every_readable_url() -> None:
    triaged = triage(
        case(
            description="Naked pictures of a 13 year old pupil are being shared.",
            urls=[TIKTOK, "https://forum.example.org/t/3"],
        )
    )

    assert triaged.route == "hotline"
    assert triaged.urgency == "critical"
    assert [u.route for u in triaged.urls] == ["hotline", "hotline"]


# Realistic descriptions, as school staff write them; one per harm type.
DESCRIPTIONS: dict[HarmType, str] = {
    "online_reputation": "Parents are spreading false rumours about our headteacher on a "
    "local page, saying she was sacked from her last school. None of it is true.",
    "bullying_harassment": "A group of Year 8 pupils keep posting videos mocking a "
    "classmate's weight and telling him nobody likes him. He is being bullied every day.",
    "impersonation": "Someone has set up a fake account pretending to be our deputy head, "
    "using her photo and messaging parents as her.",
    "school_branding_misuse": "An account is using our school logo and crest without "
    "permission to sell hoodies and pretend to be the official school page.",
    "privacy_images_doxxing": "A student posted photos of pupils taken in the changing "
    "room and another account shared a teacher's home address and phone number.",
    "child_sexual_imagery": "A nude image of a 14 year old pupil is being shared around "
    "on a group chat.",
    "threats_risk_to_life": "A pupil posted that someone will bring a knife to school "
    "tomorrow and stab people.",
    "self_harm": "A Year 10 girl posted pictures of her cuts and says she will hurt "
    "herself again tonight.",
    "hate": "An account keeps posting racist abuse about a Black pupil and homophobic "
    "slurs at two of our students.",
    "scams": "A fake page is running a scam, asking parents to pay school trip fees into "
    "a bank account that is not ours.",
    "other": "Please look at this page.",
}


@pytest.mark.parametrize("harm", list(DESCRIPTIONS))
def test_every_harm_type_reaches_the_triaged_event(harm: HarmType) -> None:
    triaged = triage(case(description=DESCRIPTIONS[harm], urls=[TIKTOK]))

    assert harm in triaged.harm_types
    assert triaged.lead_harm_type == triaged.harm_types[0]


def test_every_route_reaches_the_triaged_event() -> None:
    csam = triage(case(DESCRIPTIONS["child_sexual_imagery"], urls=[TIKTOK]))
    bullying = triage(
        case(DESCRIPTIONS["bullying_harassment"], urls=[TIKTOK, "https://e.example/"])
    )

    assert {u.route for u in csam.urls} == {"hotline"}
    assert [u.route for u in bullying.urls] == ["platform", "manual"]
