"""The packaged triage rules on realistic descriptions: every harm type and route, text
tolerance (case, accents, letter-for-digit spellings, spacing), negations, and what raises
urgency (a child affected, repeated reports, unsure rules)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from helpline_shared.events import HarmType
from helpline_triage.rules import CaseFacts, RuleSet

RULES = RuleSet.load()


THREAT: HarmType = "threats_risk_to_life"
SELF_HARM: HarmType = "self_harm"
CSAM: HarmType = "child_sexual_imagery"
PRIVACY: HarmType = "privacy_images_doxxing"
HATE: HarmType = "hate"
IMPERSONATION: HarmType = "impersonation"
BRANDING: HarmType = "school_branding_misuse"
REPUTATION: HarmType = "online_reputation"
BULLYING: HarmType = "bullying_harassment"
SCAMS: HarmType = "scams"
OTHER: HarmType = "other"

REALISTIC: list[tuple[str, HarmType]] = [
    ("Someone posted that our headteacher 'deserves to die'.", THREAT),
    ("Someone keeps saying they'll hurt my son after school.", THREAT),
    ("There's a TikTok saying our school will be bombed on Monday.", THREAT),
    ("Someone commented 'ur gonna get merked' under a pupil's video.", THREAT),
    ("s/h content is being shared in a year 8 group chat.", SELF_HARM),
    ("A post says 'there will be a shooting at our school tomorrow, stay home'.", THREAT),
    ("An account says a teacher will be 'dealt with' after school.", THREAT),
    ("Photos of our reception class were shared without parents' permission.", PRIVACY),
    ("Someone set up a profile with our deputy head's photo and name.", IMPERSONATION),
    ("Someone will bring a knife to school tomorrow, it says on Snapchat.", THREAT),
    ("A message to our head of year: 'watch your back, I know where you live'.", THREAT),
    ("Her story shows fresh cuts on her arm; she will hurt herself again.", SELF_HARM),
    ("A pupil is a victim of sextortion: he sent a picture, now they want money.", CSAM),
    ("Photos of pupils from our website were posted without consent.", PRIVACY),
    ("A humiliating video mocking a teacher, with a pile-on in the comments.", BULLYING),
    ("An account says it will shoot up the school on Friday.", THREAT),
    ("A year 9 girl posted that she wants to end her life tonight.", SELF_HARM),
    ("Comments tell a student to k1ll himself.", SELF_HARM),
    ("Anonymous account keeps commenting kys under his videos.", SELF_HARM),
    ("A boy in year 11 says he is going to unalive himself after the exams.", SELF_HARM),
    ("Nudes of a year 10 girl are being shared on Snapchat.", CSAM),
    ("An explicit image of a pupil is circulating in a group chat.", CSAM),
    ("Someone posted our teacher's home address and phone number.", PRIVACY),
    ("Racist abuse aimed at a Year 8 boy in the comments.", HATE),
    ("Homophobic comments about a member of staff under the post.", HATE),
    ("Antisemitic posts about our teacher, with swastikas.", HATE),
    ("A fake account of the head teacher is messaging parents.", IMPERSONATION),
    ("Someone is pretending to be our deputy head on Instagram.", IMPERSONATION),
    ("The school logo and crest are on a page selling hoodies.", BRANDING),
    ("False allegations about Mr Jones are being spread in a post.", REPUTATION),
    ("A TikTok page rating teachers and naming staff.", REPUTATION),
    ("A fake fundraiser asks parents for bank details.", SCAMS),
    ("Phishing emails claim our uniform shop needs card details.", SCAMS),
    ("A YouTube channel has uploaded our leaked mock exam papers.", OTHER),
]


@pytest.mark.parametrize(("description", "harm_type"), REALISTIC)
def test_each_harm_type_fires_on_a_realistic_description(
    description: str, harm_type: HarmType
) -> None:
    c = RULES.classify(CaseFacts(description))

    assert harm_type in c.harm_types
    assert all(m.evidence for m in c.matches)


def test_every_harm_type_is_reached_by_some_description() -> None:
    assert {h for _, h in REALISTIC} == set(RULES.file.harm_types)


def test_evidence_is_the_text_as_written() -> None:
    c = RULES.classify(CaseFacts("Comments tell a student to K1LL himself."))

    evidence = [e for m in c.matches for e in m.evidence]
    assert any("K1LL himself" in e for e in evidence)


@pytest.mark.parametrize(
    "description",
    [
        "He wants to KILL HIMSELF, he said.",
        "he wants to k1ll h1mself",
        "she keeps saying $u1c1de",
        "tell him to k i l l himself",
        "Elle a parlé de suicide: she said 'suïcide' on her story",
        "wants to end her l1fe",
    ],
)
def test_case_accents_and_letter_for_digit_spellings_are_read(description: str) -> None:
    c = RULES.classify(CaseFacts(description))

    assert "self_harm" in c.harm_types
    assert c.urgency == "critical"


def test_leetspeak_hate_and_masked_slurs() -> None:
    assert "hate" in RULES.classify(CaseFacts("They call him a p*ki in the group chat")).harm_types
    assert "hate" in RULES.classify(CaseFacts("r@cist comments under her photo")).harm_types


@pytest.mark.parametrize(
    ("description", "absent"),
    [
        ("The post is not a threat, just rude about Mr Smith.", "threats_risk_to_life"),
        ("There is no suggestion of self-harm in the post, but it mocks her.", "self_harm"),
        ("The comments aren't racist but they are nasty about her weight.", "hate"),
        ("A video mocking our head without any threats.", "threats_risk_to_life"),
        ("No mention of self-harm or suicide; a pupil posts sad lyrics.", "self_harm"),
        ("Year 10s at a party: no drugs or weapons, but our logo is on it.", THREAT),
    ],
)
def test_negations_do_not_fire_the_rule_they_negate(description: str, absent: HarmType) -> None:
    assert absent not in RULES.classify(CaseFacts(description)).harm_types


@pytest.mark.parametrize(
    "description",
    [
        "He says he doesn't want to live anymore.",
        "She posted that she can't go on.",
        "His story says there is no reason to live.",
        "She told a friend she won't be here tomorrow.",
        "He said he does not want to be alive.",
        "Our pupil says she doesn't see the point in living anymore.",
    ],
)
def test_risk_idioms_containing_a_negation_still_fire(description: str) -> None:
    c = RULES.classify(CaseFacts(description))

    assert "self_harm" in c.harm_types
    assert c.urgency == "critical"


def test_harm_types_are_most_severe_first_and_the_lead_is_the_first() -> None:
    c = RULES.classify(
        CaseFacts("A fake account posts nudes of a year 9 girl and her home address.")
    )

    assert c.harm_types[0] == c.lead_harm_type == "child_sexual_imagery"
    assert c.harm_types == RULES.most_severe_first(c.harm_types)
    assert {"impersonation", "privacy_images_doxxing"} <= set(c.harm_types)


def test_sexual_imagery_of_a_child_goes_to_the_hotline_at_critical() -> None:
    c = RULES.classify(CaseFacts("Nude images of a pupil are being passed around."))

    assert c.route == "hotline"
    assert c.urgency == "critical"
    assert c.deadline == timedelta(hours=24)
    assert "route.hotline" in c.rules_fired


def test_threats_are_critical_but_go_to_the_platform() -> None:
    c = RULES.classify(CaseFacts("A post threatens to stab our teacher after school."))

    assert c.route == "platform"
    assert c.urgency == "critical"
    assert "route.hotline" not in c.rules_fired


def test_declared_harm_types_count_as_matches() -> None:
    c = RULES.classify(CaseFacts("Please look at this account.", declared=("scams", "scams")))

    assert c.harm_types == ["scams"]
    assert c.matches[0].rule_id == "declared.scams"
    assert c.matches[0].evidence == ["declared: scams"]
    assert c.urgency == "normal"


def test_declared_sexual_imagery_goes_to_the_hotline() -> None:
    c = RULES.classify(CaseFacts("Please look at this account.", declared=(CSAM,)))

    assert (c.route, c.urgency) == ("hotline", "critical")


def test_a_child_affected_raises_normal_to_high() -> None:
    adult = RULES.classify(CaseFacts("A TikTok mocking our teacher's dancing."))
    child = RULES.classify(CaseFacts("A TikTok mocking a year 8 pupil's dancing."))

    assert adult.urgency == "normal"
    assert child.urgency == "high"
    assert child.deadline == timedelta(hours=72)
    raised = [m for m in child.matches if m.rule_id == "urgency.child_affected"]
    assert raised
    assert any("year 8" in e for e in raised[0].evidence)


@pytest.mark.parametrize(
    "who", ["my son", "a student", "a boy in year 9", "the child", "pupils in Year 7"]
)
def test_several_ways_of_naming_a_child(who: str) -> None:
    c = RULES.classify(CaseFacts(f"Someone made a meme mocking {who}."))

    assert c.urgency == "high"


def test_pupils_who_made_the_content_do_not_raise_urgency() -> None:
    c = RULES.classify(CaseFacts("Year 8 boys made a TikTok mocking Mrs Patel."))

    assert c.urgency == "normal"
    assert "urgency.child_affected" not in c.rules_fired


def test_repeated_reports_raise_normal_to_high() -> None:
    text = "A TikTok mocking our teacher's dancing."
    once = RULES.classify(CaseFacts(text, prior_reports=1))
    many = RULES.classify(CaseFacts(text, prior_reports=2))

    assert once.urgency == "normal"
    assert many.urgency == "high"
    match = next(m for m in many.matches if m.rule_id == "urgency.repeat_reports")
    assert match.evidence == ["2 other cases reported the same content"]


def test_raisers_never_lower_critical() -> None:
    c = RULES.classify(CaseFacts("A year 7 pupil says he will kill himself.", prior_reports=5))

    assert c.urgency == "critical"


def test_unsure_rules_give_other_at_high_so_a_person_looks() -> None:
    c = RULES.classify(CaseFacts("Please look at this account."))

    assert c.harm_types == ["other"]
    assert c.urgency == "high"
    assert c.route == "platform"
    assert c.rules_fired == ["unsure.other"]


def test_an_account_called_fake_counts_when_the_url_is_an_account() -> None:
    text = "This copy of our head's page needs to go."
    plain = RULES.classify(CaseFacts(text))
    on_account = RULES.classify(CaseFacts(text, platforms=("tiktok",), kinds=("account",)))

    assert "impersonation" not in plain.harm_types
    assert "impersonation" in on_account.harm_types
    match = next(m for m in on_account.matches if m.rule_id == "impersonation.fake_profile_url")
    assert "URL kind: account" in match.evidence


def test_classification_is_deterministic_and_versioned() -> None:
    facts = CaseFacts("A fake profile threatens to share nude images and our home address.")

    assert RULES.classify(facts) == RuleSet.load().classify(facts)
    assert RULES.classify(facts).rules_version == RULES.version


def test_taxonomy_lookups() -> None:
    assert RULES.dsa_category("self_harm") == "STATEMENT_CATEGORY_SELF_HARM"
    assert RULES.dsa_category("hate") == "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH"
    assert RULES.dsa_category("other") == "STATEMENT_CATEGORY_OTHER_VIOLATION_TC"
    assert RULES.reason_code("bullying_harassment", "tiktok") == "harassment_and_bullying"
    assert RULES.reason_code("hate", "no-such-platform") is None
    for harm in RULES.file.harm_types:
        for platform in RULES.file.report_platforms:
            assert RULES.reason_code(harm, platform)
    assert list(RULES.urgency_levels()) == ["critical", "high", "normal"]
    assert RULES.deadline("normal") == timedelta(hours=168)
    assert RULES.most_severe_first(["other", "hate", "child_sexual_imagery", "hate"]) == [
        "child_sexual_imagery",
        "hate",
        "other",
    ]


def test_children_named_only_in_a_quotation_or_a_claim_do_not_raise_urgency() -> None:
    quoted = RULES.classify(CaseFacts("A TikTok says our head 'hates kids'. It is untrue."))
    claimed = RULES.classify(CaseFacts("A post claims our teacher shouted at pupils. Untrue."))
    affected = RULES.classify(CaseFacts("A TikTok mocks a Year 7 pupil's 'weird' voice."))

    assert quoted.urgency == claimed.urgency == "normal"
    assert affected.urgency == "high"


def test_a_vague_report_is_other_and_high_so_a_person_looks_soon() -> None:
    c = RULES.classify(CaseFacts("Something upsetting about our school online, no link yet."))

    assert c.harm_types == ["other"]
    assert c.urgency == "high"
    assert "other.vague" in c.rules_fired


@pytest.mark.parametrize(
    "description",
    [
        "Pupils were passing out leaflets and someone filmed it.",
        "We want to end it: the account keeps posting about our head.",
        "I am done with this school, says a parent on Facebook.",
        "The kids are cheeky monkeys, says a post about our class trip.",
        "Pupils are told to go back to school after the strike.",
        "Can you pull up the video and check it?",
        "A pyjama day photo of our class was posted by a parent.",
        "The school photoshoot went on Instagram and the show was 'the bomb'.",
        "A pupil's TikTok shows him killing it at the talent show.",
    ],
)
def test_everyday_words_near_risk_words_do_not_fire_critical_types(description: str) -> None:
    c = RULES.classify(CaseFacts(description))

    assert not {THREAT, SELF_HARM, CSAM, HATE} & set(c.harm_types), c.matches
    assert c.route == "platform"
