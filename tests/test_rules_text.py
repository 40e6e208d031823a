"""Text normalisation for the rules: what each view reads, that every view character maps
back to the original, and that no input makes classification fail or run long."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from helpline_triage.rules import CaseFacts, RuleSet
from helpline_triage.text import views

RULES = RuleSet.load()


def decoded(text: str) -> str:
    return views(text)[-1].text


def test_case_accents_and_typographic_quotes_are_plain() -> None:
    assert views("Élève SUÏCIDE “quoted” — dash")[0].text == "eleve suicide  quoted  - dash"


def test_letter_for_digit_spellings_are_read_as_words() -> None:
    assert decoded("k1ll h8 $u1c1de r@cist n00ds k!ll") == "kill hate suicide racist noods kill"


def test_numbers_years_and_times_are_left_alone() -> None:
    text = "year 10 y7 at 7pm on the 1st, 50 views, 1 2 3"
    assert decoded(text) == text


def test_spaced_out_words_are_joined() -> None:
    assert decoded("tell him to k i l l himself, k.y.s") == "tell him to kill himself, kys"


def test_evidence_maps_back_to_the_original_text() -> None:
    text = "Tell him to K 1 L L himself"
    c = RULES.classify(CaseFacts(text))

    evidence = [e for m in c.matches for e in m.evidence]
    assert any(e in text and "K 1 L L" in e for e in evidence), evidence


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_any_text_classifies_deterministically(text: str) -> None:
    first = RULES.classify(CaseFacts(text))

    assert first == RULES.classify(CaseFacts(text))
    assert first.harm_types
    assert first.lead_harm_type == first.harm_types[0]
    for view in views(text):
        assert len(view.origin) == len(view.text)
        assert all(0 <= i < len(text) for i in view.origin)
    for match in first.matches:
        assert match.evidence


def test_a_long_repetitive_description_is_classified_quickly() -> None:
    for text in ("a " * 5000, "pupils " * 1400, "not a " * 1600, "k i l l " * 1200):
        started = time.monotonic()
        RULES.classify(CaseFacts(text))
        assert time.monotonic() - started < 2.0
