"""Versioned event contracts, one model per topic and schema version.

Every model forbids unknown fields and carries `schema_version`. Internal events carry an
`event_id` that is deterministic in their input (uuid5), so a redelivered input produces the
same event and consumers deduplicate on it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    model_validator,
)

from helpline_shared.weburl import parse_web_url

# Namespace for every deterministic id the system derives.
HELPLINE_NS = uuid.UUID("6f1c2f43-8d0e-4a43-9a0a-6c6f6e6c7031")

SIMULATED_SOURCE_PREFIX = "simulated:"


def is_simulated_source(source: str) -> bool:
    """The report's `source` is in the namespace reserved for generated reports
    (`helpline simulate`): `simulated:<anything>`."""
    return source.startswith(SIMULATED_SOURCE_PREFIX)


def derive_id(*parts: object) -> uuid.UUID:
    """A stable id from its inputs: the same parts always give the same id."""
    return uuid.uuid5(HELPLINE_NS, "|".join(str(p) for p in parts))


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


HarmType = Literal[
    "online_reputation",
    "bullying_harassment",
    "impersonation",
    "school_branding_misuse",
    "privacy_images_doxxing",
    "child_sexual_imagery",
    "threats_risk_to_life",
    "self_harm",
    "hate",
    "scams",
    "other",
]
Urgency = Literal["critical", "high", "normal"]
UrlKind = Literal[
    "account",
    "video",
    "post",
    "comment",
    "story",
    "channel",
    "group",
    "live",
    "game",
    "unknown",
]
UrlOrigin = Literal["urls", "description"]
Route = Literal["platform", "hotline", "manual"]
NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _check_web_url(value: str) -> str:
    parse_web_url(value)  # as a browser reads it (WHATWG); the reason never echoes it
    return value


def _check_utc_range(value: datetime | None) -> datetime | None:
    # Stored as timestamptz (UTC): a moment whose UTC year leaves 1-9999 cannot be stored.
    if value is not None and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("must fall between years 1 and 9999 once converted to UTC") from None
    return value


WebUrl = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2048), AfterValidator(_check_web_url)
]


class Reporter(_Event):
    """Who reported. Personal data: kept in intake's table only, never in later events."""

    name: NonEmpty = Field(max_length=200, examples=["A. Teacher"])
    email: EmailStr = Field(examples=["a.teacher@school.example"])
    role: str | None = Field(None, max_length=100, examples=["designated safeguarding lead"])


class ReportSubmittedV1(_Event):
    """A report as another system publishes it onto `helpline.reports.submitted`.

    `(source, report_id)` identifies the report: publishing it again is a duplicate and
    opens no second case.
    """

    schema_version: Literal[1] = Field(description="Contract version of this payload.")
    source: NonEmpty = Field(
        max_length=100, description="Publishing system.", examples=["partner-web-form"]
    )
    report_id: NonEmpty = Field(
        max_length=200,
        description="The publisher's id for this report; the idempotency key.",
        examples=["form-2024-000123"],
    )
    submitted_at: Annotated[datetime | None, AfterValidator(_check_utc_range)] = Field(
        None, description="When the reporter submitted it (years 1-9999 in UTC)."
    )
    reporter: Reporter
    organisation: str | None = Field(None, max_length=200, examples=["Oakfield Primary School"])
    description: NonEmpty = Field(
        max_length=10_000,
        description="What the content is and why it is harmful.",
        examples=["A TikTok account is impersonating our head teacher."],
    )
    urls: list[WebUrl] = Field(
        min_length=1,
        max_length=50,
        description="The offending URLs (http or https).",
        examples=[["https://www.tiktok.com/@fake_head/video/7301234567890123456"]],
    )
    issue_types: list[HarmType] = Field(
        default_factory=list, description="The reporter's own classification, if any."
    )

    @model_validator(mode="after")
    def _no_nul_characters(self) -> ReportSubmittedV1:
        # PostgreSQL text cannot hold NUL: refuse it here rather than fail to store it.
        if _has_nul(self.model_dump()):
            raise ValueError("text must not contain NUL (\\u0000) characters")
        return self


PlatformAnswer = Literal[
    "no_answer_yet",
    "content_removed",
    "content_restricted",
    "no_violation_found",
    "refused_other_reason",
]


class PriorReport(_Event):
    """Whether the reporter already reported the content to the platform, when, and what
    the platform answered (the platform's own reference, if it gave one)."""

    reported_to_platform: bool = Field(
        description="True if the reporter already used the platform's own reporting tools."
    )
    reported_at: Annotated[datetime | None, AfterValidator(_check_utc_range)] = Field(
        None, description="When they reported it to the platform, if they did and know."
    )
    platform_answer: PlatformAnswer | None = Field(
        None, description="What the platform answered, if they reported it."
    )
    platform_reference: str | None = Field(
        None,
        max_length=200,
        description="The platform's reference for that report (a ticket or case number).",
        examples=["TT-REPORT-88123"],
    )

    @model_validator(mode="after")
    def _details_only_if_reported(self) -> PriorReport:
        if not self.reported_to_platform and (
            self.reported_at or self.platform_answer or self.platform_reference
        ):
            raise ValueError(
                "reported_at, platform_answer and platform_reference need "
                "reported_to_platform: true"
            )
        return self


class ReportSubmittedV2(ReportSubmittedV1):
    """Version 2 of a report on `helpline.reports.submitted`: version 1 and whether the
    reporter already reported the content to the platform (`prior_report`). Intake reads
    both versions side by side, by `schema_version`."""

    schema_version: Literal[2] = Field(  # type: ignore[assignment]
        description="Contract version of this payload."
    )
    prior_report: PriorReport | None = Field(
        None,
        description="Whether the reporter already reported it to the platform, and what came "
        "of it (absent when the reporter was not asked or did not answer).",
    )
    child_affected: bool | None = Field(
        None,
        description="Whether a child (under 18) is affected by the content; absent when "
        "the reporter was not asked or does not know.",
    )


class RejectionReason(_Event):
    loc: str = Field(description="Where in the payload, dotted; empty for the whole message.")
    message: str
    type: str = Field(description="Machine-readable reason code.")


Channel = Literal["kafka", "http", "form"]


class ReportRejectedV1(_Event):
    """A message intake refused, with every reason and the original bytes (base64)."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    rejected_at: datetime
    via: Channel = Field(description="Where it came from: the topic, the HTTP API, the web form.")
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = Field(
        None, description="The refused message's key, cut to 1,024 characters (see key_size)."
    )
    key_size: int | None = Field(
        None, description="The original key's size in bytes, when it was cut; else absent."
    )
    reasons: list[RejectionReason] = Field(
        min_length=1,
        description="One per problem, at most 100 (the last then says how many more).",
    )
    original_base64: str = Field(
        description="The refused message, base64, as JSON with the value of every reporter "
        'field replaced by "[redacted]" (re-serialised: not byte for byte); empty when '
        "withheld (see original_withheld). The full bytes stay in intake's own table for its "
        "retention period."
    )
    original_withheld: Literal["too_large", "not_json"] | None = Field(
        None,
        description="Why original_base64 is empty: too large to carry (it stays at "
        "source_topic/partition/offset), or not JSON, so personal data cannot be told apart.",
    )


class CaseOpenedV1(_Event):
    """Intake accepted a report and opened a case. No reporter personal data."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    case_id: uuid.UUID
    source: str
    report_id: str
    received_at: datetime
    published_at: datetime | None = Field(None, description="When the publisher sent it.")
    organisation: str | None = None
    description: str
    urls: list[str]
    issue_types: list[HarmType] = Field(default_factory=list)
    prior_report: PriorReport | None = Field(
        None,
        description="From a version 2 report: whether the reporter already reported it to "
        "the platform, when, and what the platform answered. Absent for version 1 reports "
        "(the question was not asked).",
    )
    simulated: bool = Field(
        False,
        description="Generated by `helpline simulate` (its source is in the `simulated:` "
        "namespace): the case belongs to the period of `published_at`, not of `received_at`.",
    )
    child_affected: bool | None = Field(
        None, description="From a version 2 report: whether a child is affected."
    )


def case_reference(case_id: uuid.UUID) -> str:
    """The short reference of a case that a person can read out on the phone:
    `HL-XXXX-XXXX` in Crockford base32 (no I, L, O, U) from the case id's first 40 bits.
    The UUID stays the case's id; the reference is derived from it, never stored apart."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    n = int.from_bytes(case_id.bytes[:5], "big")
    chars = "".join(alphabet[(n >> shift) & 31] for shift in range(35, -1, -5))
    return f"HL-{chars[:4]}-{chars[4:]}"


class ReporterDetailsV1(_Event):
    """A case's reporter, on `helpline.cases.reporters` (personal data): published by intake
    when it opens the case, and again with `reporter` null when the reporter's data is
    erased, so every holder (casework) drops it. Keyed by case id; only casework reads it."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    case_id: uuid.UUID
    reporter: Reporter | None = Field(description="Null once erased.")
    occurred_at: datetime


class TriagedUrl(_Event):
    url_id: uuid.UUID = Field(description="Stable id of this URL in this case.")
    url: str = Field(description="The URL as reported.")
    normalized_url: str = Field(
        description="Canonical form: the same content compares equal across hosts, short "
        "links, mobile hosts, tracking parameters, letter case, trailing slashes, fragments."
    )
    platform: str = Field(description="Platform slug, or 'unknown'.")
    route: Route
    reason: str | None = Field(
        None, description="Why this URL waits for a person (route 'manual'), when triage knows."
    )
    kind: UrlKind = Field("unknown", description="What the URL points at on its platform.")
    origin: UrlOrigin = Field(
        "urls", description="Where it was reported: the report's URL list or its description."
    )
    short_link: bool = Field(
        False,
        description="A short link triage cannot expand without fetching it (it never fetches "
        "a reported URL): kept as given, so it compares equal only to itself.",
    )
    dsa_category: str | None = Field(
        None, description="DSA statement-of-reasons category of the harm the notice leads with."
    )
    reason_code: str | None = Field(
        None, description="The platform's own reason code for that harm, from the rules data."
    )


class RuleMatch(_Event):
    rule_id: str
    evidence: list[str] = Field(
        default_factory=list,
        description="What fired it: matched text, or a fact such as "
        "'declared: hate' or '3 cases reported the same content'.",
    )


class CaseTriagedV1(_Event):
    """Triage's decision for a case: harm types, urgency, route and each URL's platform."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    case_id: uuid.UUID
    received_at: datetime
    triaged_at: datetime
    harm_types: list[HarmType]
    urgency: Urgency
    route: Route
    rules_fired: list[str] = Field(description="Ids of the triage rules that matched.")
    urls: list[TriagedUrl]
    rules_version: str | None = Field(None, description="Version of the rules data applied.")
    lead_harm_type: HarmType | None = Field(
        None, description="The most severe harm type: the one a notice leads with."
    )
    decision_due_at: datetime | None = Field(
        None, description="When a platform decision is due, from the urgency's deadline."
    )
    matches: list[RuleMatch] = Field(
        default_factory=list,
        description="Each rule that fired and what made it fire (text fragments or facts).",
    )
    rejected_urls: list[str] = Field(
        default_factory=list,
        description="Deprecated, always empty: a URL triage cannot read is in `urls` with "
        "route 'manual' and its reason.",
    )
    period_at: datetime | None = Field(
        None,
        description="For a simulated case only, when it was published (in the simulated "
        "year): the time that places the case in a period of the figures. None for real "
        "cases, placed by `received_at`. Durations always run from `received_at`.",
    )
    revision: int = Field(
        1, ge=1, description="1 for triage's own decision; each practitioner override adds 1."
    )
    supersedes: uuid.UUID | None = Field(
        None, description="The event_id of the decision this one replaces (an override)."
    )
    overridden_by: str | None = Field(
        None, description="Key id of the practitioner whose override this decision is."
    )
    override_note: str | None = Field(None, description="The practitioner's reason.")


EscalationState = Literal[
    "submitted",  # the platform (or the hotline) has the notice
    "decided",  # the platform decided (or a practitioner recorded its decision)
    "failed",
    "needs_manual",  # waiting for a person
    "breached",  # the decision deadline passed with no decision (the escalation stays open)
    "closed",  # a practitioner closed it as advice only: no platform decision will come
    "appealed",  # a practitioner contested a no_violation decision on the appeal route
    "appeal_decided",  # the appeal's outcome: `decision` is the platform's new decision
    "withdrawn",  # a re-triage moved it to another route; the pending notice was withdrawn
]
# States that end an escalation's wait for the platform (it no longer counts as open).
CLOSING_STATES: frozenset[str] = frozenset({"decided", "failed", "closed", "withdrawn"})
Decision = Literal[
    "removed",
    "disabled",
    "age_restricted",
    "demoted",
    "labelled",
    "no_violation",
    "already_gone",
]
TAKEDOWN_DECISIONS: frozenset[str] = frozenset({"removed", "disabled", "already_gone"})


class EscalationOutcomeV1(_Event):
    """A URL's escalation reached a state, on `helpline.escalations.outcomes`.

    An escalation stands for one content (route, platform, canonical URL) and is shared by
    every case that reported it: one notice to the platform, and one event per state per
    linked case (`event_id` = uuid5 of the case's `url_id` and state), keyed by case id so
    one case's outcomes stay in order. A case linked after a state was reached gets that
    state's event at once, with the same facts and `occurred_at`.
    """

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    case_id: uuid.UUID
    escalation_id: uuid.UUID
    platform: str
    url: str
    state: EscalationState
    decision: Decision | None = None
    platform_reference: str | None = None
    attempts: int = Field(ge=0)
    reason: str | None = Field(None, description="Why it failed or needs manual handling.")
    received_at: datetime = Field(description="When intake received the report.")
    occurred_at: datetime = Field(description="When the escalation reached this state.")
    url_id: uuid.UUID | None = Field(
        None,
        description="This case's URL (its TriagedUrl.url_id). Absent on events from before "
        "shared escalations, where it equals escalation_id.",
    )
    linked_at: datetime | None = Field(
        None, description="When this case was linked to the escalation."
    )
    linked_cases: int | None = Field(
        None, ge=1, description="How many cases shared the escalation when this was sent."
    )
    first_received_at: datetime | None = Field(
        None,
        description="When intake received the report of the case that opened the "
        "escalation: time to decision for the content is measured from it.",
    )
    route: Route | None = Field(None, description="The escalation's route.")
    due_at: datetime | None = Field(
        None, description="When the platform's decision is due (from the urgency's deadline)."
    )
    followups: int | None = Field(
        None, ge=0, description="Re-notifications sent so far (follow-ups citing the reference)."
    )
    actor: str | None = Field(
        None, description="Key id of the practitioner who recorded this state; null if automatic."
    )
    note: str | None = Field(None, description="The practitioner's note, when one recorded it.")
    overturned: bool | None = Field(
        None, description="On `appeal_decided`: whether the appeal changed the decision."
    )


class PlatformFiguresV1(_Event):
    decisions: int = Field(ge=0, description="Distinct content the platform decided on.")
    takedowns: int = Field(
        ge=0, description="Of those, decisions that took it down (removed, disabled, gone)."
    )
    open_escalations: int = Field(
        ge=0, description="Distinct content escalated to it and not yet decided or failed."
    )


class MetricsSnapshotV1(_Event):
    """The headline totals at one moment, on `helpline.metrics.snapshots`.

    Published by metrics at an interval and soon after the totals change. `sequence` is the
    number of events metrics had counted: it only grows, so a consumer keeps the snapshot
    with the highest sequence and drops older ones. `event_id` is uuid5 of the sequence and
    the figures (not `as_of`): the same totals republished carry the same id. Figures count
    as `GET /v1/totals` does (distinct content for escalations, decisions and takedowns).
    """

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    sequence: int = Field(ge=0, description="Events counted so far; larger is newer.")
    as_of: datetime = Field(description="When the totals were read.")
    cases: int = Field(ge=0)
    urls: int = Field(ge=0, description="URLs of cases after triage (URL reports).")
    url_reports: int = Field(ge=0, description="Same as `urls`: each URL of each case.")
    urls_escalated: int = Field(ge=0, description="Distinct content a platform was notified of.")
    decisions: int = Field(ge=0, description="Distinct content with a platform decision.")
    decisions_by_type: dict[str, int] = Field(description="Those decisions by their kind.")
    takedowns: int = Field(ge=0)
    takedown_rate: float | None = Field(
        description="takedowns / decisions, 4 decimals; null until there is a decision."
    )
    open_escalations: int = Field(
        ge=0, description="Distinct content escalated and not yet decided or failed."
    )
    platforms: dict[str, PlatformFiguresV1] = Field(description="By platform slug.")


ActivityKind = Literal[
    "submit",  # the notice
    "status",  # asking the platform for its decision
    "lookup",  # finding out whether a notice whose reply was lost arrived
    "followup",  # a re-notification after the deadline, citing the platform's reference
    "appeal",  # contesting a decision on the platform's appeal route
    "withdrawal",  # withdrawing a notice after a re-triage changed the route
    "hotline_report",  # the report to the national hotline
    "practitioner",  # a person's action (see `action`)
]
PractitionerAction = Literal[
    "escalated_by_hand",  # the practitioner sent it to the platform; platform_reference given
    "platform_decision",  # the platform decided; `decision` given
    "advice_only",  # closed: the helpline advised and no platform decision is sought
    "appeal",  # contest a no_violation decision on the platform's appeal route
    "retriage",  # override triage's decision for the case (`retriage` given)
]
ActivityResult = Literal["ok", "retryable", "permanent", "lost", "refused"]


class EscalationActivityV1(_Event):
    """One thing done for an escalation, on `helpline.escalations.activity`: each call to a
    platform or the hotline once it ends (time, kind, HTTP status, result) and each
    practitioner action (who, when, the note), applied or refused with the reason.

    Keyed by escalation id; `event_id` is the attempt's or the command's id, so a
    redelivery is recognised. For casework's timeline; carries no reporter data."""

    schema_version: Literal[1] = 1
    event_id: uuid.UUID
    escalation_id: uuid.UUID
    platform: str
    kind: ActivityKind
    started_at: datetime
    finished_at: datetime | None = None
    http_status: int | None = None
    result: ActivityResult | None = None
    error: str | None = Field(None, description="Why it did not succeed (never content).")
    actor: str | None = Field(None, description="Practitioner's key id, for `practitioner`.")
    action: PractitionerAction | None = None
    note: str | None = None
    command_id: uuid.UUID | None = None


class RetriageOverride(_Event):
    harm_types: list[HarmType] = Field(min_length=1)
    urgency: Urgency
    route: Route


class PractitionerCommandV1(_Event):
    """A practitioner's action, on `helpline.practitioner.commands` (published by casework,
    keyed by case id): the escalator applies escalation actions, triage applies `retriage`.
    `command_id` makes it idempotent: applying it twice changes nothing the second time.
    The outcome (or refusal, with the reason) comes back as outcome/activity events."""

    schema_version: Literal[1] = 1
    command_id: uuid.UUID
    case_id: uuid.UUID
    escalation_id: uuid.UUID | None = Field(
        None, description="The escalation acted on; null only for `retriage`."
    )
    action: PractitionerAction
    actor: str = Field(description="Key id of the practitioner.")
    issued_at: datetime
    note: NonEmpty = Field(max_length=4000)
    platform_reference: str | None = Field(None, max_length=200)
    decision: Decision | None = None
    retriage: RetriageOverride | None = None

    @model_validator(mode="after")
    def _fields_for_action(self) -> PractitionerCommandV1:
        a = self.action
        if (a == "retriage") != (self.retriage is not None):
            raise ValueError("`retriage` is given with, and only with, action retriage")
        if a != "retriage" and self.escalation_id is None:
            raise ValueError(f"action {a} needs escalation_id")
        if (a == "escalated_by_hand") != bool(self.platform_reference):
            raise ValueError("platform_reference is given with, and only with, escalated_by_hand")
        if (a == "platform_decision") != (self.decision is not None):
            raise ValueError("decision is given with, and only with, platform_decision")
        return self
