"""Triage tried as outsiders would: descriptions the rules were not written on, URL forms a
tester would reach for first, and the equivalences a practitioner expects.

`triage_fresh_cases.jsonl` holds descriptions written after the rules and the labelled set,
as school staff and pupils would write them (slang, leet, accents, French, negations), and
labelled by the policy in `EVALSET.md`. A risk to life or a child's sexual imagery is never
missed on them, and they meet the same aims as the labelled set.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from helpline_triage.evaluate import CRITICAL, LabelledCase, evaluate, facts_of, load_set
from helpline_triage.rules import RuleSet

RULES = RuleSet.load()
RULES_FILE = Path(str(resources.files("helpline_triage") / "rules.json"))
HELPLINE = str(Path(sys.executable).with_name("helpline"))
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


def _broken(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _codes(data: dict[str, Any]) -> dict[str, str]:
    return data["harm_types"]["hate"]["reason_codes"]  # type: ignore[no-any-return]


def _first_rule(data: dict[str, Any]) -> dict[str, Any]:
    return data["harm_rules"][0]  # type: ignore[no-any-return]


BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "unknown harm type": (lambda d: _first_rule(d).update(harm_type="doxing"), '"harm_type"'),
    "duplicate id": (lambda d: d["harm_rules"][1].update(id=_first_rule(d)["id"]), '"id"'),
    "bad regex": (lambda d: _first_rule(d)["patterns"].append("(open"), '"patterns['),
    "empty pattern": (lambda d: _first_rule(d)["patterns"].append("x?"), '"patterns['),
    "no reason code": (
        lambda d: d["harm_types"]["hate"]["reason_codes"].pop("tiktok"),
        "reason_codes",
    ),
    "version a number": (lambda d: d.update(version=6), '"version"'),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_rules_check_refuses_a_broken_file_naming_rule_and_field(name: str, tmp_path: Path) -> None:
    change, field = BROKEN[name]
    path = _broken(tmp_path, change)
    done = subprocess.run(
        [HELPLINE, "rules", "check", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    assert field in said
    if name not in ("version a number", "no reason code"):
        assert f'rule "{json.loads(RULES_FILE.read_text())["harm_rules"][0]["id"]}"' in said
