"""The first triage rule set, kept in data (`rules.json`), applied deterministically.

The same case text always yields the same harm types, urgency, route and fired rule ids,
so a replayed case triages identically and every decision can be explained.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

from helpline_shared.events import HarmType, Route, Urgency


@dataclass(frozen=True)
class Classification:
    harm_types: list[HarmType]
    urgency: Urgency
    route: Route
    rules_fired: list[str]


def _keyword_pattern(keywords: list[str]) -> re.Pattern[str]:
    """Keywords as word starts ("bully" matches "bullying", "kill" not "skill")."""
    words = "|".join(re.escape(k) for k in keywords)
    return re.compile(rf"\b(?:{words})", re.IGNORECASE)


@dataclass(frozen=True)
class RuleSet:
    data: dict[str, Any]
    patterns: dict[str, re.Pattern[str]]  # harm rule id -> compiled keywords

    @classmethod
    def load(cls) -> RuleSet:
        text = (resources.files("helpline_triage") / "rules.json").read_text(encoding="utf-8")
        data = json.loads(text)
        patterns = {r["id"]: _keyword_pattern(r["keywords"]) for r in data["harm_rules"]}
        return cls(data, patterns)

    @property
    def version(self) -> str:
        return str(self.data["version"])

    def classify(self, description: str, declared: list[HarmType]) -> Classification:
        fired: list[str] = []
        harm: list[HarmType] = []
        for declared_type in declared:
            if declared_type not in harm:
                harm.append(declared_type)
                fired.append(f"declared.{declared_type}")
        for rule in self.data["harm_rules"]:
            if self.patterns[rule["id"]].search(description):
                fired.append(rule["id"])
                if rule["harm_type"] not in harm:
                    harm.append(rule["harm_type"])
        if not harm:
            harm.append(cast(HarmType, self.data["default_harm_type"]))
            fired.append("default.harm_type")
        urgency = cast(Urgency, self.data["default_urgency"])
        for rule in self.data["urgency"]:
            if set(rule["harm_types"]) & set(harm):
                urgency = rule["urgency"]
                fired.append(rule["id"])
                break
        route: Route = "platform"
        for rule in self.data["routes"]:
            if set(rule["harm_types"]) & set(harm):
                route = rule["route"]
                fired.append(rule["id"])
                break
        return Classification(sorted(harm), urgency, route, fired)
