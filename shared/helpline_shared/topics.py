"""The topic registry: every topic, its key, its producers and consumers, its payload model.

`helpline topics create` creates exactly these; nothing relies on broker auto-creation.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from helpline_shared import events


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    model: type[BaseModel] | None
    external: bool = False
    description: str = ""
    partitions: int | None = None  # None: HELPLINE_KAFKA_TOPIC_PARTITIONS


REPORTS_SUBMITTED = Topic(
    "helpline.reports.submitted",
    key="report_id (recommended; any key is accepted)",
    producers=("external systems", "intake HTTP API"),
    consumers=("intake",),
    model=events.ReportSubmittedV1,
    external=True,
    description="Reports published by other systems.",
)
REPORTS_REJECTED = Topic(
    "helpline.reports.rejected",
    key="the refused message's key",
    producers=("intake",),
    consumers=("external systems", "metrics"),
    model=events.ReportRejectedV1,
    external=True,
    description="What intake refused, with the reasons and the original bytes.",
)
CASES_OPENED = Topic(
    "helpline.cases.opened",
    key="case_id",
    producers=("intake",),
    consumers=("triage",),
    model=events.CaseOpenedV1,
)
CASES_TRIAGED = Topic(
    "helpline.cases.triaged",
    key="case_id",
    producers=("triage",),
    consumers=("escalator", "metrics"),
    model=events.CaseTriagedV1,
)
ESCALATION_OUTCOMES = Topic(
    "helpline.escalations.outcomes",
    key="case_id",
    producers=("escalator",),
    consumers=("metrics", "external systems"),
    model=events.EscalationOutcomeV1,
    external=True,
    description="Every state an escalation reaches; what metrics consumers subscribe to.",
)


def dead_letter(service: str) -> Topic:
    return Topic(
        f"helpline.{service}.dlq",
        key="the original key",
        producers=(service,),
        consumers=("operators",),
        model=None,
        description=f"Messages {service} could not process: original bytes and the error.",
        partitions=1,  # low volume; one partition keeps them in the order they failed
    )


SERVICES = ("intake", "triage", "escalator", "metrics")
DEAD_LETTERS = {service: dead_letter(service) for service in SERVICES}

ALL_TOPICS: tuple[Topic, ...] = (
    REPORTS_SUBMITTED,
    REPORTS_REJECTED,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_OUTCOMES,
    *DEAD_LETTERS.values(),
)
