"""Triage's rules, kept in data (`rules.json`, versioned) and applied deterministically.

`RuleSet.load()` reads and validates the packaged rules file (or another one) and raises
`RulesError`, naming the rule and the field of every problem, when it cannot be used: the
service refuses to start on a bad rules file rather than triage with it. The rules file holds
the harm taxonomy (labels, severity order, DSA statement categories, each platform's reason
codes), the harm rules, the urgency levels with their decision deadlines and the routes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from helpline_shared.events import HarmType, Urgency
from helpline_triage.classify import CaseFacts, Classification, Engine
from helpline_triage.ruleset import URGENCIES, RulesError, RulesFile, parse_rules, read_rules

__all__ = ["CaseFacts", "Classification", "RuleSet", "RulesError"]


@dataclass(frozen=True)
class RuleSet:
    """A validated rules file, ready to classify cases."""

    file: RulesFile
    engine: Engine

    @classmethod
    def load(cls, path: Path | None = None) -> RuleSet:
        """The rules in `path`, or the packaged rules file when None; raises RulesError."""
        if path is None:
            text = (resources.files("helpline_triage") / "rules.json").read_text(encoding="utf-8")
            rules = parse_rules(text, "rules.json")
        else:
            rules = read_rules(Path(path))
        return cls(rules, Engine.build(rules))

    @property
    def version(self) -> str:
        return self.file.version

    @property
    def data(self) -> dict[str, Any]:
        """The rules file as plain data (JSON types)."""
        return json.loads(self.file.model_dump_json(by_alias=True))  # type: ignore[no-any-return]

    @property
    def rule_count(self) -> int:
        """Harm rules, routes and urgency raisers: every rule that can fire by id."""
        return len(self.file.harm_rules) + len(self.file.routes) + 3

    def classify(
        self, facts: CaseFacts | str, declared: Sequence[HarmType] | None = None
    ) -> Classification:
        """The case's classification. A bare description (with `declared`) is read as
        `CaseFacts(description, declared)`, for callers that know nothing more."""
        if isinstance(facts, str):
            facts = CaseFacts(facts, tuple(declared or ()))
        return self.engine.classify(facts)

    def most_severe_first(self, harm_types: Sequence[HarmType]) -> list[HarmType]:
        """The harm types once each, most severe first (the order a notice leads with)."""
        return self.engine.most_severe_first(harm_types)

    def label(self, harm_type: HarmType) -> str:
        return self.file.harm_types[harm_type].label

    def dsa_category(self, harm_type: HarmType) -> str:
        """The DSA statement-of-reasons category, e.g. STATEMENT_CATEGORY_CYBER_VIOLENCE."""
        return self.file.harm_types[harm_type].dsa_category

    def dsa_keywords(self, harm_type: HarmType) -> list[str]:
        return list(self.file.harm_types[harm_type].dsa_keywords)

    def reason_code(self, harm_type: HarmType, platform: str) -> str | None:
        """The platform's own report reason for the harm type; None for an unknown platform."""
        return self.file.harm_types[harm_type].reason_codes.get(platform)

    def urgency_levels(self) -> dict[Urgency, timedelta]:
        """Each urgency level, most urgent first, with its decision deadline."""
        return {u: timedelta(hours=self.file.urgency_levels[u].deadline_hours) for u in URGENCIES}

    def deadline(self, urgency: Urgency) -> timedelta:
        return timedelta(hours=self.file.urgency_levels[urgency].deadline_hours)
