"""What the case API and the practitioners' pages show: one pydantic model per view.

These are answers, not events: they are built by :mod:`helpline_casework.queries` from the
read model and may grow fields. A reporter's contact details appear in a `CaseView` only
when asked for with `contacts` (which the API allows only to a `practitioner` key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from helpline_shared.events import (
    ActivityKind,
    ActivityResult,
    Decision,
    EscalationState,
    HarmType,
    PractitionerAction,
    PriorReport,
    Route,
    RuleMatch,
    TriagedUrl,
    Urgency,
)


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReporterView(_View):
    """Who reported the case (personal data: only with `contacts`)."""

    name: str | None = None
    email: str | None = None
    role: str | None = None
    erased: bool = Field(False, description="The reporter's data was erased.")


class DecisionView(_View):
    """One triage decision; revision 1 is triage's own, each override adds 1."""

    revision: int
    triaged_at: datetime
    harm_types: list[HarmType]
    lead_harm_type: HarmType | None
    urgency: Urgency
    route: Route
    rules_fired: list[str]
    matches: list[RuleMatch]
    rules_version: str | None
    decision_due_at: datetime | None
    overridden_by: str | None = Field(None, description="Key id of the overriding practitioner.")
    override_note: str | None
    urls: list[TriagedUrl] = Field(description="Each URL's platform and route as decided.")


class AttemptView(_View):
    """One call to a platform or the hotline, once it ended."""

    started_at: datetime
    finished_at: datetime | None
    kind: ActivityKind
    http_status: int | None
    result: ActivityResult | None
    error: str | None


ActionResult = Literal["pending", "ok", "retryable", "permanent", "lost", "refused"]


class ActionView(_View):
    """A practitioner's action: `pending` from the moment casework accepted it until the
    escalator (or triage) reports it applied (`ok`) or `refused` (with `error`)."""

    command_id: uuid.UUID | None
    at: datetime
    actor: str | None = Field(description="Key id of the practitioner.")
    action: PractitionerAction
    note: str | None
    result: ActionResult
    error: str | None
    platform_reference: str | None = None
    decision: Decision | None = None


class StateView(_View):
    """A state the escalation reached, for this case."""

    state: EscalationState
    occurred_at: datetime
    decision: Decision | None
    actor: str | None
    note: str | None


class EscalationView(_View):
    """One URL of the case and its escalation (shared by every case reporting the content)."""

    escalation_id: uuid.UUID
    url_id: uuid.UUID | None
    url: str
    platform: str
    route: Route | None
    state: EscalationState
    decision: Decision | None
    platform_reference: str | None
    reason: str | None
    due_at: datetime | None
    overdue: bool = Field(
        description="Breached, or its deadline passed with no decision and it is still open."
    )
    followups: int
    attempts: list[AttemptView]
    actions: list[ActionView]
    states: list[StateView] = Field(description="Oldest first.")


class CaseView(_View):
    """A case as a practitioner reads it."""

    case_id: uuid.UUID
    reference: str = Field(description="Short reference to quote by phone (HL-XXXX-XXXX).")
    source: str
    report_id: str
    received_at: datetime
    organisation: str | None
    description: str
    urls: list[str]
    issue_types: list[HarmType]
    child_affected: bool | None
    prior_report: PriorReport | None
    reporter: ReporterView | None = Field(
        None, description="Only when asked for with contacts (practitioner keys)."
    )
    decision: DecisionView | None = Field(description="The current triage decision.")
    decisions: list[DecisionView] = Field(description="Every revision, oldest first.")
    escalations: list[EscalationView]
    retriages: list[ActionView] = Field(
        default_factory=list, description="Practitioners' re-triage requests, oldest first."
    )
    overdue: bool = Field(description="Any of its escalations is overdue.")


class CaseSummary(_View):
    """A case in a list."""

    case_id: uuid.UUID
    reference: str
    received_at: datetime
    organisation: str | None
    urgency: Urgency | None
    route: Route | None
    platforms: list[str]
    states: list[EscalationState] = Field(description="Its escalations' states, distinct.")
    overdue: bool


class QueueItem(_View):
    """An escalation waiting for a person."""

    escalation_id: uuid.UUID
    case_id: uuid.UUID = Field(description="The first case that reported the content.")
    reference: str
    url: str
    platform: str
    route: Route | None
    urgency: Urgency | None
    state: EscalationState
    reason: str = Field(description="Why it waits for a person.")
    waiting_since: datetime
    age_s: int = Field(description="Seconds since it began waiting.")
    due_at: datetime | None
    overdue: bool
