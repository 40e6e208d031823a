"""Intake's work on a batch of submitted messages.

Promises, per message, at least once and idempotently:
- a valid report is stored once per `(source, report_id)` under a deterministic case id,
  and `helpline.cases.opened` carries it (event id derived from the case id);
- a repeat of a stored report opens nothing and is counted as a duplicate, once per Kafka
  position even when the batch is redelivered;
- an invalid message is published to `helpline.reports.rejected` with every reason and its
  original bytes; the rejection is recorded (reasons only) in `intake.rejections`.
Offsets are committed by the caller only after this returns.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from helpline_intake import repository
from helpline_intake.repository import StoredReport
from helpline_intake.validation import validate_report
from helpline_shared import cloudevents
from helpline_shared.consumer import Record, position
from helpline_shared.db import Database
from helpline_shared.events import (
    CaseOpenedV1,
    RejectionReason,
    ReportRejectedV1,
    ReportSubmittedV1,
    derive_id,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.topics import CASES_OPENED, REPORTS_REJECTED

SOURCE = "urn:helpline:intake"
log = get_logger("helpline.intake")


def case_id_for(report: ReportSubmittedV1) -> uuid.UUID:
    return derive_id("case", report.source, report.report_id)


def opened_message(stored: StoredReport) -> OutgoingMessage:
    report = stored.report
    event = CaseOpenedV1(
        event_id=derive_id("case.opened", stored.case_id),
        case_id=stored.case_id,
        source=report.source,
        report_id=report.report_id,
        received_at=stored.received_at,
        published_at=report.submitted_at,
        organisation=report.organisation,
        description=report.description,
        urls=report.urls,
        issue_types=report.issue_types,
    )
    return OutgoingMessage(
        CASES_OPENED.name,
        event.model_dump_json().encode(),
        str(stored.case_id).encode(),
        cloudevents.headers(
            event_id=event.event_id,
            type_="helpline.case.opened.v1",
            source=SOURCE,
            time=event.received_at,
            subject=str(event.case_id),
        ),
    )


def rejected_message(event: ReportRejectedV1, key: bytes | None) -> OutgoingMessage:
    return OutgoingMessage(
        REPORTS_REJECTED.name,
        event.model_dump_json().encode(),
        key,
        cloudevents.headers(
            event_id=event.event_id,
            type_="helpline.report.rejected.v1",
            source=SOURCE,
            time=event.rejected_at,
        ),
    )


def rejection(
    raw: bytes,
    reasons: list[RejectionReason],
    *,
    via: str,
    record: Record | None = None,
) -> ReportRejectedV1:
    rid = derive_id("rejected", position(record)) if record is not None else uuid.uuid4()
    return ReportRejectedV1(
        event_id=rid,
        rejected_at=utcnow(),
        via="kafka" if via == "kafka" else "http",
        source_topic=record.topic if record else None,
        source_partition=record.partition if record else None,
        source_offset=record.offset if record else None,
        key=record.key.decode("utf-8", "replace") if record and record.key else None,
        reasons=reasons,
        original_base64=base64.b64encode(raw).decode(),
    )


class Intake:
    def __init__(self, db: Database, broker: KafkaBroker) -> None:
        self._db = db
        self._broker = broker
        self.accepted = 0
        self.duplicates = 0
        self.rejected = 0

    async def process(self, records: Sequence[Record]) -> None:
        """Handle one consumed batch; see the module docstring for the guarantees."""
        received_at = utcnow()
        valid: list[tuple[Record, StoredReport]] = []
        rejected: list[tuple[Record, ReportRejectedV1]] = []
        for record in records:
            result = validate_report(record.value)
            if isinstance(result, ReportSubmittedV1):
                valid.append(
                    (record, StoredReport(case_id_for(result), result, "kafka", received_at))
                )
            else:
                event = rejection(record.value or b"", result, via="kafka", record=record)
                rejected.append((record, event))

        async with self._db.pool.acquire() as conn, conn.transaction():
            fresh = await repository.claim_positions(conn, [position(r) for r, _ in valid])
            new_cases = await repository.insert_reports(conn, [s for _, s in valid])
            duplicates: list[uuid.UUID] = []
            to_open: dict[uuid.UUID, StoredReport] = {}
            for record, stored in valid:
                cid = stored.case_id
                if cid in new_cases and cid not in to_open:
                    to_open[cid] = stored
                elif position(record) in fresh:
                    duplicates.append(cid)
                else:
                    # Redelivered after an earlier attempt stored it: that attempt may not
                    # have published, so publish again (same event id; consumers dedupe).
                    to_open.setdefault(cid, stored)
            await repository.count_duplicates(conn, duplicates)
            await repository.insert_rejections(
                conn, [(e.event_id, e.rejected_at, "kafka", e.reasons) for _, e in rejected]
            )

        await publish_all(
            self._broker,
            [opened_message(s) for s in to_open.values()]
            + [rejected_message(e, r.key) for r, e in rejected],
        )
        for stored in to_open.values():
            with bind_event(
                case_id=stored.case_id, event_id=derive_id("case.opened", stored.case_id)
            ):
                log.debug("case opened")
        for record, event in rejected:
            with bind_event(event_id=event.event_id):
                log.info(
                    "report rejected",
                    position=position(record),
                    reasons=[f"{r.loc}: {r.type}" for r in event.reasons],
                )
        self.accepted += len(new_cases)
        self.duplicates += len(duplicates)
        self.rejected += len(rejected)
