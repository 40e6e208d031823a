"""Classification of a case's facts by a validated rules file.

Pure and deterministic: the same facts and rules always give the same `Classification`,
with every rule that fired and its evidence (the matched text as written in the description,
or the fact that made it fire), so each decision can be explained and replayed.

Order of decision: declared harm types, then the harm rules in file order (a rule may stand
back when an earlier one found a more specific harm) give the harm types, most severe first;
when none does, the rules are unsure and the type is `unsure.harm_type`. The urgency is the
first level, most urgent first, that lists one of them, raised (never lowered) when a child
is among those affected, when enough other cases reported the same content, when the rules
were unsure, or by a harm rule's own `raise_to`. The route is the first route rule listing one
of the harm types, else the default.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache

from helpline_shared.events import HarmType, Route, RuleMatch, Urgency
from helpline_triage.ruleset import URGENCIES, HarmRule, Negation, RulesFile
from helpline_triage.text import View, views

# A quotation in the description: opening quote after a non-letter, closing before one.
_QUOTED = re.compile(
    "(?<![A-Za-z])['\u2018\"\u201c][^'\u2019\"\u201d\n]{1,120}?['\u2019\"\u201d](?![A-Za-z])"
)
UNSURE = "no harm rule or declared type matched: a person should look"


@dataclass(frozen=True)
class CaseFacts:
    """What triage knows about a case when it classifies it."""

    description: str
    declared: Sequence[HarmType] = ()
    platforms: Sequence[str] = ()  # platform slug of each URL of the case
    kinds: Sequence[str] = ()  # UrlKind of each URL
    prior_reports: int = 0  # most other cases that reported the same content


@dataclass(frozen=True)
class Classification:
    harm_types: list[HarmType]  # most severe first
    lead_harm_type: HarmType
    urgency: Urgency
    route: Route  # "platform" or "hotline"; "manual" is decided per URL
    deadline: timedelta  # the urgency level's decision deadline
    matches: list[RuleMatch]  # every rule that fired, in order, with its evidence
    rules_version: str

    @property
    def rules_fired(self) -> list[str]:
        return [m.rule_id for m in self.matches]


def _alternation(patterns: Sequence[str]) -> re.Pattern[str]:
    """Patterns as one expression anchored at a word start ("kill" not in "skill")."""
    return re.compile("(?<![a-z0-9])(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")


@dataclass(frozen=True)
class _Negator:
    breaks: re.Pattern[str]
    before: re.Pattern[str]

    @classmethod
    def build(cls, n: Negation) -> _Negator:
        fillers = "|".join(n.fillers) or "(?!)"
        before = (
            r"(?<![a-z0-9'])(?:" + "|".join(n.cues) + r")"
            rf"(?:[\s,'\-]+(?:{fillers})(?![a-z0-9])){{0,{n.max_fillers}}}[\s\-'\"]*$"
        )
        return cls(_alternation(n.clause_breaks), re.compile(before))

    def negated(self, text: str, start: int) -> bool:
        """A cue and fillers only come between the clause start and `start`.

        Linear in the text however many matches it holds: the clause breaks are found once
        per text, and a cue with its fillers is looked for only in the last
        `_NEGATION_REACH` characters before `start`."""
        ends = _break_ends(self.breaks, text)
        clause_start = ends[bisect_right(ends, start) - 1] if ends and ends[0] <= start else 0
        pos = max(clause_start, start - _NEGATION_REACH)
        return self.before.search(text, pos, start) is not None


_NEGATION_REACH = 300  # far longer than a cue and `max_fillers` filler words


@lru_cache(maxsize=16)
def _break_ends(breaks: re.Pattern[str], text: str) -> list[int]:
    return [m.end() for m in breaks.finditer(text)]


def _find(
    pattern: re.Pattern[str],
    texts: Sequence[View],
    original: str,
    negator: _Negator | None,
    unless: re.Pattern[str] | None = None,
    *,
    skip: Sequence[tuple[int, int]] = (),
) -> list[str]:
    """Evidence of every match not negated (nor inside an `unless` match, nor starting in
    one of the `skip` spans of the original), once each."""
    found: list[str] = []
    for view in texts:
        excluded = [m.span() for m in unless.finditer(view.text)] if unless else []
        for m in pattern.finditer(view.text):
            if m.end() == m.start() or any(a <= m.start() < b for a, b in excluded):
                continue
            if any(a <= view.origin[m.start()] < b for a, b in skip):
                continue
            if negator and negator.negated(view.text, m.start()):
                continue
            evidence = view.original_span(m.start(), m.end(), original).strip()
            if evidence and evidence not in found:
                found.append(evidence)
    return found


@dataclass(frozen=True)
class _Compiled:
    rule: HarmRule
    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None
    cleared: re.Pattern[str] | None
    requires: re.Pattern[str] | None

    @classmethod
    def build(cls, r: HarmRule) -> _Compiled:
        return cls(
            r,
            _alternation(r.patterns),
            _alternation(r.except_) if r.except_ else None,
            _alternation(r.cleared_by) if r.cleared_by else None,
            _alternation(r.requires) if r.requires else None,
        )


@dataclass(frozen=True)
class Engine:
    """A rules file compiled for matching."""

    rules: RulesFile
    harm_patterns: tuple[_Compiled, ...]
    child: re.Pattern[str]
    child_unless: re.Pattern[str] | None
    negator: _Negator
    severity: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(cls, rf: RulesFile) -> Engine:
        c = rf.child_affected
        return cls(
            rf,
            tuple(_Compiled.build(r) for r in rf.harm_rules),
            _alternation(c.patterns),
            _alternation(c.not_when) if c.not_when else None,
            _Negator.build(rf.negation),
            {h: s.severity for h, s in rf.harm_types.items()},
        )

    def most_severe_first(self, harm_types: Sequence[HarmType]) -> list[HarmType]:
        return sorted(dict.fromkeys(harm_types), key=lambda h: self.severity[h])

    def classify(self, facts: CaseFacts) -> Classification:
        rf = self.rules
        texts = views(facts.description)
        matches: list[RuleMatch] = []
        harm = self._harm_types(facts, texts, matches)
        unsure = not harm
        if unsure:
            harm.append(rf.unsure.harm_type)
            matches.append(RuleMatch(rule_id=rf.unsure.id, evidence=[UNSURE]))
        ordered = self.most_severe_first(harm)
        urgency = self._urgency(facts, texts, ordered, unsure, matches)
        route: Route = rf.default_route
        for r in rf.routes:
            hit = [h for h in ordered if h in r.harm_types]
            if hit:
                route = r.route
                matches.append(RuleMatch(rule_id=r.id, evidence=[f"harm type: {h}" for h in hit]))
                break
        return Classification(
            harm_types=ordered,
            lead_harm_type=ordered[0],
            urgency=urgency,
            route=route,
            deadline=timedelta(hours=rf.urgency_levels[urgency].deadline_hours),
            matches=matches,
            rules_version=rf.version,
        )

    def _harm_types(
        self, facts: CaseFacts, texts: Sequence[View], matches: list[RuleMatch]
    ) -> list[HarmType]:
        """Declared types, then each harm rule in file order (a rule sees what came before)."""
        harm: list[HarmType] = []
        for declared in dict.fromkeys(facts.declared):
            said = [f"declared: {declared}"]
            matches.append(RuleMatch(rule_id=f"declared.{declared}", evidence=said))
            harm.append(declared)
        for compiled in self.harm_patterns:
            rule = compiled.rule
            if rule.kinds and not set(rule.kinds) & set(facts.kinds):
                continue
            if rule.platforms and not set(rule.platforms) & set(facts.platforms):
                continue
            if set(rule.unless_harm_types) & set(harm):
                continue
            if compiled.cleared and any(compiled.cleared.search(v.text) for v in texts):
                continue
            negator = self.negator if rule.negatable else None
            evidence = _find(compiled.pattern, texts, facts.description, negator, compiled.unless)
            if evidence and compiled.requires:
                required = _find(compiled.requires, texts, facts.description, negator)
                evidence = evidence + [e for e in required if e not in evidence] if required else []
            if evidence:
                evidence += [f"URL kind: {k}" for k in rule.kinds if k in facts.kinds]
                evidence += [f"platform: {p}" for p in rule.platforms if p in facts.platforms]
                matches.append(RuleMatch(rule_id=rule.id, evidence=evidence))
                harm.append(rule.harm_type)
        return harm

    def _urgency(
        self,
        facts: CaseFacts,
        texts: Sequence[View],
        ordered: list[HarmType],
        unsure: bool,
        matches: list[RuleMatch],
    ) -> Urgency:
        """The first level listing a harm type, raised by each raiser that applies."""
        rf = self.rules
        base = rf.default_urgency
        for level in URGENCIES:  # most urgent first
            hit = [h for h in ordered if h in rf.urgency_levels[level].harm_types]
            if hit:
                base = level
                said = [f"harm type: {h}" for h in hit]
                matches.append(RuleMatch(rule_id=f"urgency.{level}", evidence=said))
                break
        raisers: list[tuple[str, Urgency, list[str]]] = []
        # Words quoted from the content ('hates kids') do not say who is affected.
        quoted = [m.span() for m in _QUOTED.finditer(facts.description)]
        children = _find(
            self.child, texts, facts.description, self.negator, self.child_unless, skip=quoted
        )
        if children:
            raisers.append((rf.child_affected.id, rf.child_affected.raise_to, children))
        if facts.prior_reports >= rf.repeat_reports.min_prior_reports:
            said = [f"{facts.prior_reports} other cases reported the same content"]
            raisers.append((rf.repeat_reports.id, rf.repeat_reports.raise_to, said))
        if unsure:  # its match is already recorded with the harm type
            raisers.append((rf.unsure.id, rf.unsure.raise_to, []))
        fired = {m.rule_id for m in matches}
        for compiled in self.harm_patterns:  # harm rules that raise by themselves
            rule = compiled.rule
            if rule.raise_to and rule.id in fired:
                raisers.append((rule.id, rule.raise_to, []))
        urgency = base
        for rule_id, raise_to, evidence in raisers:
            if URGENCIES.index(raise_to) < URGENCIES.index(base):
                urgency = min(urgency, raise_to, key=URGENCIES.index)
                if evidence:
                    matches.append(RuleMatch(rule_id=rule_id, evidence=evidence))
        return urgency
