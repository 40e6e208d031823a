"""The rules file's schema and its validation at load time.

`read_rules` parses a rules file into a `RulesFile` or raises `RulesError`, whose message
lists every problem found, each naming the rule (its id, or the section entry) and the field:
`rules.json: rule "self_harm.phrases": field "harm_type": 'selfharm' is not a harm type`.
Checked: the schema (unknown fields, wrong types, unknown harm types, urgencies, routes, URL
kinds and DSA categories), duplicate rule ids, regular expressions that do not compile, and
that every harm type has its label, DSA category, severity and a reason code for every
platform, and every urgency level its deadline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from helpline_shared.events import HarmType, Route, Urgency, UrlKind

# The DSA transparency database's statement categories (schema v2).
DsaCategory = Literal[
    "STATEMENT_CATEGORY_ANIMAL_WELFARE",
    "STATEMENT_CATEGORY_CONSUMER_INFORMATION",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE",
    "STATEMENT_CATEGORY_CYBER_VIOLENCE_AGAINST_WOMEN",
    "STATEMENT_CATEGORY_DATA_PROTECTION_AND_PRIVACY_VIOLATIONS",
    "STATEMENT_CATEGORY_ILLEGAL_OR_HARMFUL_SPEECH",
    "STATEMENT_CATEGORY_INTELLECTUAL_PROPERTY_INFRINGEMENTS",
    "STATEMENT_CATEGORY_NEGATIVE_EFFECTS_ON_CIVIC_DISCOURSE_OR_ELECTIONS",
    "STATEMENT_CATEGORY_NOT_SPECIFIED_NOTICE",
    "STATEMENT_CATEGORY_OTHER_VIOLATION_TC",
    "STATEMENT_CATEGORY_PROTECTION_OF_MINORS",
    "STATEMENT_CATEGORY_RISK_FOR_PUBLIC_SECURITY",
    "STATEMENT_CATEGORY_SCAMS_AND_FRAUD",
    "STATEMENT_CATEGORY_SELF_HARM",
    "STATEMENT_CATEGORY_UNSAFE_AND_PROHIBITED_PRODUCTS",
    "STATEMENT_CATEGORY_VIOLENCE",
]
HARM_TYPES: tuple[HarmType, ...] = get_args(HarmType)
URGENCIES: tuple[Urgency, ...] = get_args(Urgency)


def _one_of(kind: str, allowed: tuple[str, ...]) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and value not in allowed:
            raise ValueError(f"{value!r} is not {kind} (one of: {', '.join(allowed)})")
        return value

    return BeforeValidator(check)


HarmTypeName = Annotated[HarmType, _one_of("a harm type", HARM_TYPES)]
UrgencyName = Annotated[Urgency, _one_of("an urgency", URGENCIES)]
RouteName = Annotated[Route, _one_of("a route", get_args(Route))]
KindName = Annotated[UrlKind, _one_of("a URL kind", get_args(UrlKind))]
DsaName = Annotated[DsaCategory, _one_of("a DSA statement category", get_args(DsaCategory))]
RuleId = Annotated[str, Field(pattern=r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")]
Patterns = Annotated[list[str], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HarmTypeSpec(_Strict):
    """One harm type: how it is named, ranked and reported."""

    label: str = Field(min_length=1)
    description: str = Field(min_length=1)
    severity: int = Field(ge=1, description="1 is the most severe; a notice leads with it.")
    dsa_category: DsaName
    dsa_keywords: list[Annotated[str, Field(pattern=r"^KEYWORD_[A-Z_]+$")]] = Field(min_length=1)
    reason_codes: dict[str, Annotated[str, Field(min_length=1)]]


class UrgencyLevel(_Strict):
    deadline_hours: int = Field(gt=0)
    harm_types: list[HarmTypeName] = Field(default_factory=list)
    why: str = ""


class HarmRule(_Strict):
    """Fires its harm type when one of its patterns matches the description (not negated,
    nor inside a match of `except`), unless a `cleared_by` pattern matches anywhere (an
    explicit all-clear such as "there is no threat") or one of `unless_harm_types` was already
    found (by declaration or an earlier rule); when it has `requires` patterns, one of them must
    match too (its text joins the evidence); when it names kinds or platforms, one of the case's
    URLs must be of them."""

    id: RuleId
    harm_type: HarmTypeName
    patterns: Patterns
    negatable: bool = True
    except_: list[str] = Field(default_factory=list, alias="except")
    cleared_by: list[str] = Field(default_factory=list)
    requires: list[str] = Field(default_factory=list)
    unless_harm_types: list[HarmTypeName] = Field(default_factory=list)
    raise_to: UrgencyName | None = Field(
        None, description="An urgency this rule raises the case to when it fires."
    )
    kinds: list[KindName] = Field(default_factory=list)
    platforms: list[str] = Field(default_factory=list)
    why: str = ""


class ChildRule(_Strict):
    """Raises urgency when a child is among those affected (not only the ones who posted)."""

    id: RuleId
    raise_to: UrgencyName
    patterns: Patterns
    not_when: list[str] = Field(default_factory=list)
    why: str = ""


class RepeatRule(_Strict):
    id: RuleId
    raise_to: UrgencyName
    min_prior_reports: int = Field(ge=1)
    why: str = ""


class UnsureRule(_Strict):
    id: RuleId
    harm_type: HarmTypeName
    raise_to: UrgencyName
    why: str = ""


class RouteRule(_Strict):
    id: RuleId
    route: RouteName
    harm_types: list[HarmTypeName] = Field(min_length=1)
    why: str = ""


class Negation(_Strict):
    """A match is negated when a cue, then at most `max_fillers` filler words, come right
    before it in the same clause ("not a threat", "no suggestion of self-harm")."""

    cues: Patterns
    fillers: list[str] = Field(default_factory=list)
    max_fillers: int = Field(3, ge=0)
    clause_breaks: Patterns


class RulesFile(_Strict):
    version: str = Field(min_length=1)
    about: str = ""
    report_platforms: list[str] = Field(min_length=1)
    harm_types: dict[HarmTypeName, HarmTypeSpec]
    urgency_levels: dict[UrgencyName, UrgencyLevel]
    default_urgency: UrgencyName
    harm_rules: list[HarmRule]
    child_affected: ChildRule
    repeat_reports: RepeatRule
    unsure: UnsureRule
    routes: list[RouteRule]
    default_route: RouteName
    negation: Negation
    # Read by usecase.py's URL rules until URL understanding moves to links.py.
    platforms: dict[str, list[str]] = Field(default_factory=dict)
    tracking_parameters: list[str] = Field(default_factory=list)


class RulesError(ValueError):
    """A rules file that cannot be used; `problems` has one line per problem."""

    def __init__(self, name: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{name}: {p}" for p in problems))


def _where(data: Any, loc: tuple[int | str, ...]) -> tuple[str | None, str]:
    """The rule a pydantic error location belongs to, and the field within it."""
    if len(loc) >= 2 and isinstance(data, dict):
        section, key = loc[0], loc[1]
        if isinstance(key, int):
            items = data.get(section)
            item = items[key] if isinstance(items, list) and key < len(items) else None
            rule = item.get("id") if isinstance(item, dict) else None
            name = rule if isinstance(rule, str) else f"{section}[{key}]"
            return name, ".".join(str(p) for p in loc[2:]) or "(entry)"
        if section in ("harm_types", "urgency_levels"):
            field = ".".join(str(p) for p in loc[2:]) or "(entry)"
            return f"{section}.{key}", field.replace("[key]", "(name)")
        if isinstance(data.get(section), dict) and "id" in data[section]:
            return str(data[section]["id"]), ".".join(str(p) for p in loc[1:])
    return None, ".".join(str(p) for p in loc) or "(file)"


def _say(rule: str | None, field: str, message: str) -> str:
    who = f'rule "{rule}": ' if rule else ""
    return f'{who}field "{field}": {message}'


def _schema_problems(data: Any, exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        rule, field = _where(data, tuple(err["loc"]))
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "missing"
        out.append(_say(rule, field, message))
    return out


def _regex_problems(rule: str, field: str, patterns: list[str]) -> list[str]:
    out = []
    for i, pattern in enumerate(patterns):
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            out.append(
                _say(rule, f"{field}[{i}]", f"invalid regular expression {pattern!r}: {exc}")
            )
            continue
        if compiled.fullmatch(""):  # it would match nothing visible, everywhere
            out.append(_say(rule, f"{field}[{i}]", f"pattern {pattern!r} matches empty text"))
    return out


def _meaning_problems(rf: RulesFile) -> list[str]:
    out: list[str] = []
    ids = [r.id for r in rf.harm_rules] + [r.id for r in rf.routes]
    ids += [rf.child_affected.id, rf.repeat_reports.id, rf.unsure.id]
    for rule_id in sorted({i for i in ids if ids.count(i) > 1}):
        out.append(_say(rule_id, "id", f"duplicate rule id {rule_id!r}"))
    for rule in rf.harm_rules:
        out += _regex_problems(rule.id, "patterns", rule.patterns)
        out += _regex_problems(rule.id, "except", rule.except_)
        out += _regex_problems(rule.id, "cleared_by", rule.cleared_by)
        out += _regex_problems(rule.id, "requires", rule.requires)
        for platform in rule.platforms:
            if platform not in rf.report_platforms:
                out.append(_say(rule.id, "platforms", f"{platform!r} is not a report platform"))
    child = rf.child_affected
    out += _regex_problems(child.id, "patterns", child.patterns)
    out += _regex_problems(child.id, "not_when", child.not_when)
    for field in ("cues", "fillers", "clause_breaks"):
        out += _regex_problems("negation", field, getattr(rf.negation, field))
    for harm in HARM_TYPES:
        spec = rf.harm_types.get(harm)
        if spec is None:
            out.append(_say(f"harm_types.{harm}", "(entry)", "missing"))
            continue
        missing = [p for p in rf.report_platforms if p not in spec.reason_codes]
        unknown = [p for p in spec.reason_codes if p not in rf.report_platforms]
        if missing:
            out.append(
                _say(f"harm_types.{harm}", "reason_codes", f"missing for {', '.join(missing)}")
            )
        if unknown:
            out.append(
                _say(f"harm_types.{harm}", "reason_codes", f"unknown platform {', '.join(unknown)}")
            )
    ranks = sorted(s.severity for s in rf.harm_types.values())
    if ranks != list(range(1, len(ranks) + 1)):
        out.append(_say("harm_types", "severity", f"ranks must be 1..{len(ranks)}, once each"))
    for level in URGENCIES:
        if level not in rf.urgency_levels:
            out.append(_say(f"urgency_levels.{level}", "(entry)", "missing"))
    return out


def parse_rules(text: str, name: str = "rules.json") -> RulesFile:
    """The rules file in `text`, validated; raises `RulesError` naming every problem."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RulesError(name, [f"not JSON: {exc}"]) from None
    try:
        rf = RulesFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(name, _schema_problems(data, exc)) from None
    problems = _meaning_problems(rf)
    if problems:
        raise RulesError(name, problems)
    return rf


def read_rules(path: Path) -> RulesFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(path.name, [f"cannot be read: {exc}"]) from None
    return parse_rules(text, path.name)
