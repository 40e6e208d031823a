"""The documents of metrics' HTTP API as pydantic models: what `/openapi.json` promises.

`Totals` is `GET /v1/totals` (see :func:`helpline_metrics.totals.totals` for what each
figure counts), `AnnualReport` the JSON form of `GET /v1/report`. Both allow further
top-level figures, so a figure added to the document reaches clients before its model
names it; every figure named here is checked against its type when served.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

Counts = dict[str, int]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Filters(_Doc):
    period: str | None = Field(description="YYYY or YYYY-MM (UTC), or null for all time.")
    platform: str | None
    harm_type: str | None


class UrlReports(_Doc):
    total: int
    by_state: Counts
    takedowns: int


class Escalations(_Doc):
    total: int
    by_state: Counts
    by_platform: dict[str, Counts] = Field(description="Per platform, per state.")


class PlatformShare(_Doc):
    cases: int
    share: float | None = Field(description="Of all cases; null without cases.")


class MeanDecision(_Doc):
    decided: int
    mean_hours: float


class _Durations(_Doc):
    mean_hours: float | None
    median_seconds: float
    p90_seconds: int
    median_hours: float | None
    p90_hours: float | None


class TimeToDecision(_Durations):
    decided: int


class TimeToRemoval(_Durations):
    taken_down: int


class OpenEscalations(_Doc):
    open: int
    past_due: int = Field(description="Open with a linked case past its decision deadline.")
    oldest_age_hours: float | None
    median_age_hours: float | None


class Totals(BaseModel):
    """Every total (`GET /v1/totals`); further figures may follow these."""

    model_config = ConfigDict(extra="allow")

    as_of: str = Field(description="When the totals were read (ISO 8601, UTC).")
    filters: Filters
    cases: int
    urls: int
    urls_escalated: int
    url_reports: UrlReports
    reports_rejected: int
    reports_rejected_by_type: Counts
    escalations: Escalations
    decisions: Counts
    takedowns: int
    takedown_rate: float | None = Field(description="Takedowns / decided; null until one.")
    cases_by_platform: dict[str, PlatformShare]
    cases_by_harm_type: Counts
    time_to_decision_by_platform: dict[str, MeanDecision]
    cases_by_urgency: Counts
    cases_by_month: Counts = Field(description="YYYY-MM -> cases received.")
    breaches_by_platform: Counts
    decisions_by_platform: dict[str, Counts]
    takedowns_by_platform: Counts
    time_to_decision: dict[str, TimeToDecision]
    time_to_removal: dict[str, TimeToRemoval]
    open_escalations: dict[str, OpenEscalations]


class ReportPlatform(_Doc):
    platform: str
    name: str
    cases: int
    share: float | None


class ReportIssueType(_Doc):
    issue_type: str
    name: str
    cases: int
    share: float | None


class ReportRemoval(_Doc):
    platform: str
    name: str
    taken_down: int
    median_hours: float | None
    p90_hours: float | None


class AnnualReport(BaseModel):
    """The year's published figures (`GET /v1/report?format=json`)."""

    model_config = ConfigDict(extra="allow")

    year: int
    cases: int
    platforms: list[ReportPlatform]
    urls_escalated: int
    url_reports: int
    decided: int
    takedowns: int
    takedown_rate: float | None
    issue_types: list[ReportIssueType]
    time_to_removal: list[ReportRemoval]
    method: list[str] = Field(description="How each figure is counted, one sentence each.")
