"""The topic registry: every topic, its key, its producers and consumers, its payload model,
and its settings on the broker (partitions, replication, retention, cleanup policy,
`min.insync.replicas`).

`helpline topics create` creates exactly these with these settings; nothing relies on broker
auto-creation. `helpline topics check` reports where a running cluster differs (see
:mod:`helpline_shared.topic_admin`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from helpline_shared import events

DAY_MS = 24 * 60 * 60 * 1000
FOREVER = -1  # retention.ms -1: never deleted by age


@dataclass(frozen=True)
class Topic:
    """One topic. Settings left `None` come from the deployment (`Settings`):

    - `partitions`: HELPLINE_KAFKA_TOPIC_PARTITIONS (consumers beyond it sit idle);
    - `replication`: HELPLINE_KAFKA_REPLICATION_FACTOR;
    - `min_insync_replicas`: one less than the replication, at least 1 (acks=all writes
      survive the loss of one replica).
    """

    name: str
    key: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    model: type[BaseModel] | None
    external: bool = False
    description: str = ""
    partitions: int | None = None
    replication: int | None = None
    retention_ms: int = 7 * DAY_MS
    cleanup_policy: str = "delete"  # events, not state: compaction would drop history
    min_insync_replicas: int | None = None


REPORTS_SUBMITTED = Topic(
    "helpline.reports.submitted",
    key="report_id (recommended; any key is accepted)",
    producers=("external systems", "intake HTTP API"),
    consumers=("intake",),
    model=events.ReportSubmittedV1,
    external=True,
    description="Reports published by other systems.",
    # Carries reporters' personal data: kept only as long as a dead letter of intake can
    # still be replayed from it (intake's dead letters hold redacted copies).
    retention_ms=14 * DAY_MS,
)
REPORTS_REJECTED = Topic(
    "helpline.reports.rejected",
    key="the refused message's key",
    producers=("intake",),
    consumers=("external systems", "metrics"),
    model=events.ReportRejectedV1,
    external=True,
    description="What intake refused, with the reasons and the original bytes.",
    retention_ms=FOREVER,  # metrics rebuilds its counts from it
)
CASES_OPENED = Topic(
    "helpline.cases.opened",
    key="case_id",
    producers=("intake",),
    consumers=("triage", "casework", "notify"),
    model=events.CaseOpenedV1,
    retention_ms=FOREVER,  # triage can be replayed from it (no reporter data)
)
CASES_TRIAGED = Topic(
    "helpline.cases.triaged",
    key="case_id",
    producers=("triage",),
    consumers=("escalator", "metrics", "casework", "notify"),
    model=events.CaseTriagedV1,
    retention_ms=FOREVER,  # metrics rebuilds its counts from it
)
ESCALATION_OUTCOMES = Topic(
    "helpline.escalations.outcomes",
    key="case_id",
    producers=("escalator",),
    consumers=("metrics", "casework", "notify", "external systems"),
    model=events.EscalationOutcomeV1,
    external=True,
    description="Every state an escalation reaches; what metrics consumers subscribe to.",
    retention_ms=FOREVER,  # metrics rebuilds its counts from it
)
CASE_REPORTERS = Topic(
    "helpline.cases.reporters",
    key="case_id",
    producers=("intake",),
    consumers=("casework", "notify"),
    model=events.ReporterDetailsV1,
    description="Each case's reporter (personal data), and a null reporter once erased.",
    # Personal data: kept as briefly as the reports topic; intake's table is the record.
    retention_ms=14 * DAY_MS,
)
ESCALATION_ACTIVITY = Topic(
    "helpline.escalations.activity",
    key="escalation_id",
    producers=("escalator",),
    consumers=("casework",),
    model=events.EscalationActivityV1,
    description="Every platform call and practitioner action on an escalation, as it ends.",
    retention_ms=FOREVER,  # casework rebuilds its timelines from it
)
PRACTITIONER_COMMANDS = Topic(
    "helpline.practitioner.commands",
    key="case_id",
    producers=("casework",),
    consumers=("escalator", "triage"),
    model=events.PractitionerCommandV1,
    description="Practitioners' actions on escalations and triage decisions, to apply.",
    retention_ms=FOREVER,  # the audit trail of who did what
)

METRICS_SNAPSHOTS = Topic(
    "helpline.metrics.snapshots",
    key="totals (one key, one partition: snapshots in sequence order)",
    producers=("metrics",),
    consumers=("external systems",),
    model=events.MetricsSnapshotV1,
    external=True,
    description="The headline totals, at an interval and soon after they change.",
    partitions=1,
    # Derived and repeatable: metrics rebuilds from the event topics, never from this, and
    # the latest snapshot is the last record. Deleted by age like every topic here: three
    # days (about 4,300 at the default minute) let a subscriber that was away a weekend see
    # how the figures moved, which compaction (the latest only) would not.
    retention_ms=3 * DAY_MS,
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
        retention_ms=28 * DAY_MS,  # time to fix the cause and replay (`helpline dlq replay`)
    )


SERVICES = ("intake", "triage", "escalator", "metrics", "casework", "notify")
DEAD_LETTERS = {service: dead_letter(service) for service in SERVICES}

ALL_TOPICS: tuple[Topic, ...] = (
    REPORTS_SUBMITTED,
    REPORTS_REJECTED,
    CASES_OPENED,
    CASES_TRIAGED,
    ESCALATION_OUTCOMES,
    CASE_REPORTERS,
    ESCALATION_ACTIVITY,
    PRACTITIONER_COMMANDS,
    METRICS_SNAPSHOTS,
    *DEAD_LETTERS.values(),
)
