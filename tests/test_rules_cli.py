"""`helpline rules check` and `helpline rules eval` as a user runs them (subprocesses), and
the packaged evaluation set measured against the aims."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from helpline_triage.evaluate import default_set_path, evaluate, load_set
from helpline_triage.rules import RuleSet


def helpline(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "helpline_cli.main", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def packaged() -> dict[str, Any]:
    text = (resources.files("helpline_triage") / "rules.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def test_check_the_packaged_file() -> None:
    done = helpline("rules", "check")
    rules = RuleSet.load()

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [
        f"ok: version {rules.version}, {rules.rule_count} rules, 11 harm types",
        f"deadline critical: 24 h (rules {rules.version} urgency_levels)",
        f"deadline high: 72 h (rules {rules.version} urgency_levels)",
        f"deadline normal: 168 h (rules {rules.version} urgency_levels)",
    ]


def test_check_says_which_deadline_a_setting_overrides() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELPLINE_")}
    done = helpline("rules", "check", env={**env, "HELPLINE_DEADLINE_HIGH_S": "30"})
    assert done.returncode == 0, done.stderr
    assert "deadline high: 30 s (settings HELPLINE_DEADLINE_HIGH_S)" in done.stdout
    assert "deadline normal: 168 h (rules" in done.stdout


def test_check_a_bad_file_names_the_rule_and_field(tmp_path: Path) -> None:
    data = packaged()
    data["harm_rules"][0]["harm_type"] = "threat"
    bad = tmp_path / "rules.json"
    bad.write_text(json.dumps(data), encoding="utf-8")

    done = helpline("rules", "check", bad)

    assert done.returncode == 1
    first_id = data["harm_rules"][0]["id"]
    assert f'rule "{first_id}": field "harm_type": \'threat\' is not a harm type' in done.stderr
    assert "ok:" not in done.stdout


# Four cases whose classification is known (asserted below), so the figures can be
# worked out by hand:
#   e1 gold csam/critical        -> csam/critical           csam TP
#   e2 gold reputation/normal    -> other/high (unsure)     reputation FN, other FP
#   e3 gold scams+impers./normal -> scams/normal            scams TP, impersonation FN
#   e4 gold self_harm/high       -> self_harm/critical      self_harm TP
# micro: TP 3, FP 1, FN 2 -> precision 0.75, recall 0.6, F1 2*.75*.6/1.35 = 0.6667
SMALL_SET = [
    {"id": "e1", "description": "Nude images of a pupil are being passed around.",
     "harm_types": ["child_sexual_imagery"], "urgency": "critical"},
    {"id": "e2", "description": "Please look at this account.",
     "harm_types": ["online_reputation"], "urgency": "normal"},
    {"id": "e3", "description": "A fake fundraiser asks parents for bank details.",
     "declared": [], "urls": ["https://www.facebook.com/groups/123"],
     "harm_types": ["scams", "impersonation"], "urgency": "normal"},
    {"id": "e4", "description": "He says he doesn't want to live anymore.",
     "harm_types": ["self_harm"], "urgency": "high"},
]  # fmt: skip


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in SMALL_SET) + "\n", encoding="utf-8")
    return path


def test_the_small_set_classifies_as_the_hand_count_assumes(small_set: Path) -> None:
    rules = RuleSet.load()
    got = [rules.classify(c.description) for c in load_set(small_set)]

    assert [(c.harm_types, c.urgency) for c in got] == [
        (["child_sexual_imagery"], "critical"),
        (["other"], "high"),
        (["scams"], "normal"),
        (["self_harm"], "critical"),
    ]


def test_eval_json_figures_match_the_hand_count(small_set: Path) -> None:
    done = helpline("rules", "eval", "--set", small_set, "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["rules"]
    per = report["per_type"]
    assert report["cases"] == 4
    assert (per["child_sexual_imagery"]["tp"], per["child_sexual_imagery"]["recall"]) == (1, 1.0)
    assert (per["online_reputation"]["fn"], per["online_reputation"]["recall"]) == (1, 0.0)
    assert (per["other"]["fp"], per["other"]["precision"], per["other"]["support"]) == (1, 0.0, 0)
    assert (per["impersonation"]["fn"], per["impersonation"]["f1"]) == (1, 0.0)
    assert (per["scams"]["precision"], per["scams"]["recall"], per["scams"]["f1"]) == (1, 1, 1)
    assert report["micro"] == {
        "precision": 0.75, "recall": 0.6, "f1": 0.6667, "support": 5, "tp": 3, "fp": 1, "fn": 2,
    }  # fmt: skip
    assert report["urgency_confusion"] == {
        "critical": {"critical": 1, "high": 0, "normal": 0},
        "high": {"critical": 1, "high": 0, "normal": 0},
        "normal": {"critical": 0, "high": 1, "normal": 1},
    }
    assert report["urgency_accuracy"] == 0.5
    assert report["aims_unmet"] == ["micro-F1 0.667 < 0.9"]


def test_eval_table_and_check_aims(small_set: Path) -> None:
    done = helpline("rules", "eval", "--set", small_set)

    assert done.returncode == 0, done.stderr
    assert "online_reputation" in done.stdout
    assert "0.667" in done.stdout  # micro-F1
    assert "gold rows, predicted columns" in done.stdout
    assert "aims not met" in done.stdout

    failing = helpline("rules", "eval", "--set", small_set, "--check-aims")
    assert failing.returncode == 1


def test_eval_with_a_baseline_shows_deltas(small_set: Path, tmp_path: Path) -> None:
    # The baseline drops the unsure rule's harm type to online_reputation: e2 becomes right.
    data = packaged()
    data["version"] = "baseline"
    data["unsure"]["harm_type"] = "online_reputation"
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps(data), encoding="utf-8")

    done = helpline("rules", "eval", "--set", small_set, "--baseline", base, "--json")

    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["baseline"]["rules_version"] == "baseline"
    assert out["baseline"]["micro"]["tp"] == 4
    assert out["rules"]["micro"]["tp"] == 3
    table = helpline("rules", "eval", "--set", small_set, "--baseline", base)
    assert "(-0." in table.stdout  # the packaged rules are worse here, and it shows


def test_the_packaged_evaluation_set_meets_the_aims() -> None:
    cases = load_set(default_set_path())
    report = evaluate(RuleSet.load(), cases)

    assert len(cases) >= 300
    for harm in ("threats_risk_to_life", "self_harm", "child_sexual_imagery"):
        assert report.per_type[harm].recall >= 0.95, harm
    assert report.micro.f1 >= 0.9, report.micro.f1
