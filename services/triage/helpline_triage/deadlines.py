"""Each urgency's deadline for a platform's decision: the rules data's hours
(`rules.json` urgency_levels), unless the deployment sets `HELPLINE_DEADLINE_<URGENCY>_S`
(seconds; tests use a few). Every deadline says where it came from, so a decision can be
explained and an operator can see what the running service applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from helpline_shared.events import Urgency
from helpline_shared.settings import Settings
from helpline_triage.rules import RuleSet
from helpline_triage.ruleset import URGENCIES


@dataclass(frozen=True)
class Deadline:
    """One urgency's deadline and where it came from."""

    urgency: Urgency
    after: timedelta
    source: str  # "settings HELPLINE_DEADLINE_HIGH_S" or "rules <version> urgency_levels"

    def describe(self) -> str:
        """e.g. `high: 30 s (settings HELPLINE_DEADLINE_HIGH_S)`."""
        seconds = self.after.total_seconds()
        amount = f"{int(seconds // 3600)} h" if seconds % 3600 == 0 else f"{seconds:g} s"
        return f"{self.urgency}: {amount} ({self.source})"


@dataclass(frozen=True)
class Deadlines:
    """The deadline of each urgency: a setting's seconds where one is set, else the rules'."""

    rules: RuleSet
    seconds: dict[Urgency, float] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, rules: RuleSet, settings: Settings | None) -> Deadlines:
        if settings is None:
            return cls(rules)
        given: dict[Urgency, float | None] = {
            "critical": settings.deadline_critical_s,
            "high": settings.deadline_high_s,
            "normal": settings.deadline_normal_s,
        }
        return cls(rules, {u: s for u, s in given.items() if s is not None})

    def of(self, urgency: Urgency) -> Deadline:
        if urgency in self.seconds:
            return Deadline(
                urgency,
                timedelta(seconds=self.seconds[urgency]),
                f"settings HELPLINE_DEADLINE_{urgency.upper()}_S",
            )
        return Deadline(
            urgency,
            self.rules.deadline(urgency),
            f"rules {self.rules.version} urgency_levels",
        )

    def describe(self) -> list[str]:
        """One line per urgency, most urgent first (for `helpline rules check` or a log)."""
        return [self.of(u).describe() for u in URGENCIES]
