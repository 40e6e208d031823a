"""The rules file is validated at load: every problem is reported naming its rule (or
section entry) and field, and a bad file is refused rather than used."""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from helpline_triage.rules import RulesError, RuleSet


def packaged() -> dict[str, Any]:
    text = (resources.files("helpline_triage") / "rules.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def rule(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in data["harm_rules"] if r["id"] == rule_id)


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> str:
    data = packaged()
    change(data)
    with pytest.raises(RulesError) as caught:
        RuleSet.load(write(tmp_path, data))
    return str(caught.value)


def test_the_packaged_file_loads_with_every_harm_type_and_level() -> None:
    rules = RuleSet.load()

    assert rules.version
    assert len(rules.file.harm_types) == 11
    assert list(rules.urgency_levels()) == ["critical", "high", "normal"]
    assert RuleSet.load(None).version == rules.version


def test_a_copy_of_the_packaged_file_loads_from_a_path(tmp_path: Path) -> None:
    assert RuleSet.load(write(tmp_path, packaged())).version == RuleSet.load().version


def test_an_unknown_harm_type_names_the_rule_and_field(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        rule(d, "self_harm.suicide")["harm_type"] = "selfharm"

    message = load_error(tmp_path, change)

    assert (
        'rules.json: rule "self_harm.suicide": field "harm_type": '
        "'selfharm' is not a harm type" in message
    )


def test_an_invalid_regex_names_the_rule_and_pattern(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        rule(d, "hate.protected_characteristic")["patterns"].append("racis(")

    message = load_error(tmp_path, change)

    assert 'rule "hate.protected_characteristic": field "patterns[' in message
    assert "invalid regular expression 'racis('" in message


def test_duplicate_rule_ids_are_named(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        rule(d, "scams.fraud")["id"] = "hate.protected_characteristic"

    message = load_error(tmp_path, change)

    assert 'rule "hate.protected_characteristic": field "id": duplicate rule id' in message


def test_a_missing_dsa_category_names_the_harm_type(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        del d["harm_types"]["hate"]["dsa_category"]

    message = load_error(tmp_path, change)

    assert 'rule "harm_types.hate": field "dsa_category": missing' in message


def test_an_unknown_dsa_category_is_refused(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["harm_types"]["scams"]["dsa_category"] = "STATEMENT_CATEGORY_SCAMS"

    message = load_error(tmp_path, change)

    assert 'rule "harm_types.scams": field "dsa_category"' in message
    assert "is not a DSA statement category" in message


def test_missing_reason_codes_name_the_platforms(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        del d["harm_types"]["impersonation"]["reason_codes"]["discord"]
        del d["harm_types"]["impersonation"]["reason_codes"]["roblox"]

    message = load_error(tmp_path, change)

    assert (
        'rule "harm_types.impersonation": field "reason_codes": missing for discord, roblox'
        in message
    )


def test_an_unknown_urgency_is_refused(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        d["child_affected"]["raise_to"] = "urgent"

    message = load_error(tmp_path, change)

    assert (
        'rule "urgency.child_affected": field "raise_to": \'urgent\' is not an urgency' in message
    )


def test_a_missing_harm_type_and_level_are_named(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        del d["harm_types"]["other"]
        del d["urgency_levels"]["high"]

    message = load_error(tmp_path, change)

    assert 'rule "harm_types.other": field "(entry)": missing' in message
    assert 'rule "urgency_levels.high": field "(entry)": missing' in message


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    def change(d: dict[str, Any]) -> None:
        rule(d, "self_harm.suicide")["harm_type"] = "selfharm"
        rule(d, "scams.fraud")["colour"] = "red"
        del d["version"]

    message = load_error(tmp_path, change)

    assert len(message.splitlines()) == 3
    assert 'field "version": missing' in message
    assert 'rule "scams.fraud": field "colour": Extra inputs are not permitted' in message


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text("{not json", encoding="utf-8")

    with pytest.raises(RulesError, match=r"rules\.json: not JSON"):
        RuleSet.load(path)


def test_rules_error_is_a_value_error() -> None:
    assert issubclass(RulesError, ValueError)
