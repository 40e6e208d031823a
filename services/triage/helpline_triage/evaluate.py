"""Measured quality of a rule set on a labelled evaluation set.

`evaluate` classifies every labelled case (its description, declared harm types, and the
platform and kind of each of its URLs as triage understands them) and counts, per harm type,
true and false positives and false negatives; micro-averaged precision, recall and F1 over
all harm-type labels; and the urgency confusion table (gold rows, predicted columns). Pure
and deterministic: the same set and rules always give the same report.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from helpline_shared.events import HarmType, Urgency
from helpline_triage.classify import CaseFacts
from helpline_triage.links import understand
from helpline_triage.rules import RuleSet
from helpline_triage.ruleset import HARM_TYPES, URGENCIES

CRITICAL: tuple[HarmType, ...] = ("threats_risk_to_life", "self_harm", "child_sexual_imagery")
AIM_CRITICAL_RECALL = 0.95
AIM_MICRO_F1 = 0.9


class LabelledCase(BaseModel):
    """One line of the evaluation set."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    description: str
    declared: list[HarmType] = Field(default_factory=list)
    urls: list[str] = Field(default_factory=list)
    harm_types: list[HarmType] = Field(min_length=1)
    urgency: Urgency
    notes: str | None = None


def default_set_path() -> Path:
    return Path(str(resources.files("helpline_triage") / "evalset.jsonl"))


def load_set(path: Path) -> list[LabelledCase]:
    """The labelled cases of a JSON-lines file; raises ValueError naming the bad line."""
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            cases.append(LabelledCase.model_validate_json(line))
        except ValidationError as exc:
            raise ValueError(f"{path.name} line {n}: {exc.errors()[0]['msg']}") from None
    return cases


def facts_of(case: LabelledCase) -> CaseFacts:
    known = [i for i in map(understand, case.urls) if i.reason is None and i.platform != "unknown"]
    return CaseFacts(
        description=case.description,
        declared=tuple(case.declared),
        platforms=tuple(sorted({i.platform for i in known})),
        kinds=tuple(sorted({i.kind for i in known})),
    )


@dataclass(frozen=True)
class Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def support(self) -> int:
        return self.tp + self.fn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_json(self) -> dict[str, float | int]:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
            "support": self.support,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(frozen=True)
class Miss:
    id: str
    gold: list[HarmType]
    predicted: list[HarmType]
    gold_urgency: Urgency
    predicted_urgency: Urgency


@dataclass(frozen=True)
class Report:
    rules_version: str
    cases: int
    per_type: dict[HarmType, Counts]
    micro: Counts
    confusion: dict[Urgency, dict[Urgency, int]]  # gold -> predicted -> count
    misses: list[Miss] = field(default_factory=list)

    @property
    def urgency_accuracy(self) -> float:
        right = sum(self.confusion[u][u] for u in URGENCIES)
        return right / self.cases if self.cases else 1.0

    def meets_aims(self) -> list[str]:
        """The aims not met, in words; empty when all are."""
        out = [
            f"{h} recall {self.per_type[h].recall:.3f} < {AIM_CRITICAL_RECALL}"
            for h in CRITICAL
            if self.per_type[h].recall < AIM_CRITICAL_RECALL
        ]
        if self.micro.f1 < AIM_MICRO_F1:
            out.append(f"micro-F1 {self.micro.f1:.3f} < {AIM_MICRO_F1}")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "rules_version": self.rules_version,
            "cases": self.cases,
            "per_type": {h: c.to_json() for h, c in self.per_type.items()},
            "micro": self.micro.to_json(),
            "urgency_confusion": self.confusion,
            "urgency_accuracy": round(self.urgency_accuracy, 4),
            "aims_unmet": self.meets_aims(),
            "misses": [m.__dict__ for m in self.misses],
        }


def evaluate(rules: RuleSet, cases: Sequence[LabelledCase]) -> Report:
    tally = {h: [0, 0, 0] for h in HARM_TYPES}
    confusion = {g: dict.fromkeys(URGENCIES, 0) for g in URGENCIES}
    misses = []
    for case in cases:
        c = rules.classify(facts_of(case))
        gold, got = set(case.harm_types), set(c.harm_types)
        for h in gold & got:
            tally[h][0] += 1
        for h in got - gold:
            tally[h][1] += 1
        for h in gold - got:
            tally[h][2] += 1
        confusion[case.urgency][c.urgency] += 1
        if gold != got or case.urgency != c.urgency:
            misses.append(
                Miss(
                    case.id,
                    rules.most_severe_first(case.harm_types),
                    c.harm_types,
                    case.urgency,
                    c.urgency,
                )
            )
    per_type = {h: Counts(*t) for h, t in tally.items()}
    micro = Counts(*(sum(t[i] for t in tally.values()) for i in range(3)))
    return Report(rules.version, len(cases), per_type, micro, confusion, misses)


def report_json(report: Report, baseline: Report | None) -> str:
    out: dict[str, object] = {"rules": report.to_json()}
    if baseline is not None:
        out["baseline"] = baseline.to_json()
    return json.dumps(out, indent=2)
