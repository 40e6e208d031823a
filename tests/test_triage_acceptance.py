"""Triage tried as outsiders would: descriptions the rules were not written on, URL forms a
tester would reach for first, and the equivalences a practitioner expects.

`triage_fresh_cases.jsonl` holds descriptions written after the rules and the labelled set,
as school staff and pupils would write them (slang, leet, accents, French, negations), and
labelled by the policy in `EVALSET.md`. A risk to life or a child's sexual imagery is never
missed on them, and they meet the same aims as the labelled set.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpline_triage.evaluate import CRITICAL, LabelledCase, evaluate, facts_of, load_set
from helpline_triage.rules import RuleSet

RULES = RuleSet.load()
FRESH = load_set(Path(__file__).with_name("triage_fresh_cases.jsonl"))
CRITICAL_CASES = [c for c in FRESH if set(c.harm_types) & set(CRITICAL)]


def test_fresh_set_has_every_harm_type_and_many_critical_cases() -> None:
    seen = {h for c in FRESH for h in c.harm_types}
    assert seen == set(RULES.data["harm_types"])
    assert len(FRESH) >= 100
    assert len(CRITICAL_CASES) >= 40


@pytest.mark.parametrize("case", CRITICAL_CASES, ids=[c.id for c in CRITICAL_CASES])
def test_a_critical_harm_is_never_missed_on_fresh_text(case: LabelledCase) -> None:
    got = RULES.classify(facts_of(case))
    missed = set(case.harm_types) & set(CRITICAL) - set(got.harm_types)
    assert not missed, (case.description, got.harm_types, got.matches)
    assert got.urgency == "critical"


def test_fresh_set_meets_the_aims() -> None:
    report = evaluate(RULES, FRESH)
    assert report.meets_aims() == [], report.to_json()
    # where the rules are unsure a person looks: a gold 'high' case is almost never 'normal'
    assert report.confusion["high"]["normal"] <= 1
