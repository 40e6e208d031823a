"""Intake's work on a batch of submitted messages.

Promises, per message, at least once and idempotently:
- a valid report, of either version of the contract (`schema_version` 1 or 2, read side by
  side), is stored once per `(source, report_id)` under a deterministic case id,
  and `helpline.cases.opened` carries it, built from the stored row (event id derived from
  the case id), so a redelivery republishes exactly what was stored;
- a repeat of a stored report (the same canonical content) opens nothing and is counted
  as a duplicate, once per Kafka position even when the batch is redelivered; other content
  under a stored `(source, report_id)` is refused as a `conflict`;
- an invalid message is published to `helpline.reports.rejected` with every reason and its
  original bytes; the rejection is recorded (reasons and bytes) in `intake.rejections`;
- a case opened here queues its reporter (`ReporterDetailsV1`, keyed by case id, the
  reporter's name, email and role and nothing else) on `helpline.cases.reporters` through
  intake's outbox, in the transaction that stores the report: published if and only if the
  case is stored, at least once (same `event_id` each time), relayed after the batch commits
  and, per case, before any later erasure's null reporter (see `erasure`);
- a valid message the database still refuses (a data error) is retried on its own and, if
  it fails alone, goes to `helpline.intake.dlq` instead of blocking its partition.
Offsets are committed by the caller only after this returns.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import asyncpg
from faststream.kafka import KafkaBroker

from helpline_intake import repository
from helpline_intake.redaction import redact
from helpline_intake.repository import StoredReport
from helpline_intake.validation import (
    MAX_MESSAGE_BYTES,
    conflict,
    content_hash,
    validate_report,
)
from helpline_shared import cloudevents, tracing
from helpline_shared.db import Database
from helpline_shared.deadletters import DeadLetters, Record, position
from helpline_shared.events import (
    CaseOpenedV1,
    Channel,
    RejectionReason,
    Reporter,
    ReporterDetailsV1,
    ReportRejectedV1,
    ReportSubmittedV1,
    derive_id,
    is_simulated_source,
    utcnow,
)
from helpline_shared.kafka import OutgoingMessage, publish_all
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.outbox import Outbox
from helpline_shared.topics import CASE_REPORTERS, CASES_OPENED, REPORTS_REJECTED

SOURCE = "urn:helpline:intake"
log = get_logger("helpline.intake")


def case_id_for(report: ReportSubmittedV1) -> uuid.UUID:
    return derive_id("case", report.source, report.report_id)


def opened_message(row: asyncpg.Record | Mapping[str, Any]) -> OutgoingMessage:
    """`helpline.cases.opened` for a stored report (an `intake.reports` row)."""
    event = CaseOpenedV1(
        event_id=derive_id("case.opened", row["case_id"]),
        case_id=row["case_id"],
        source=row["source"],
        report_id=row["report_id"],
        received_at=row["received_at"],
        published_at=row["submitted_at"],
        organisation=row["organisation"],
        description=row["description"],
        urls=list(row["urls"]),
        issue_types=list(row["issue_types"]),
        prior_report=repository.stored_prior_report(row),
        simulated=is_simulated_source(row["source"]),
        child_affected=row["child_affected"],
    )
    message = cloudevents.event_message(
        CASES_OPENED.name,
        event,
        event_id=event.event_id,
        key=event.case_id,
        type_="helpline.case.opened.v1",
        source=SOURCE,
        time=event.received_at,
        subject=event.case_id,
    )
    # Optional fields at their default are left out: the event is as before they existed,
    # so a consumer not yet released with them (unknown fields are refused) still reads it.
    absent = {"prior_report"} if event.prior_report is None else set()
    absent |= set() if event.simulated else {"simulated"}
    absent |= set() if event.child_affected is not None else {"child_affected"}
    if absent:
        value = event.model_dump_json(exclude=absent).encode()
        message = dataclasses.replace(message, value=value)
    return message


def reporter_message(
    case_id: uuid.UUID, reporter: Reporter | None, occurred_at: datetime
) -> OutgoingMessage:
    """`helpline.cases.reporters` for a case: its reporter when the case opens, or None once
    the reporter is erased. One event id per case and kind (opened, erased), so a repeat is
    recognised."""
    kind = "case.reporter" if reporter is not None else "case.reporter.erased"
    event = ReporterDetailsV1(
        event_id=derive_id(kind, case_id),
        case_id=case_id,
        reporter=reporter,
        occurred_at=occurred_at,
    )
    return cloudevents.event_message(
        CASE_REPORTERS.name,
        event,
        event_id=event.event_id,
        key=case_id,
        type_="helpline.case.reporter.v1",
        source=SOURCE,
        time=occurred_at,
        subject=case_id,
    )


def opened_reporter_message(row: asyncpg.Record | Mapping[str, Any]) -> OutgoingMessage:
    """The reporter of a just-stored report (an `intake.reports` row), for casework."""
    reporter = Reporter(
        name=row["reporter_name"], email=row["reporter_email"], role=row["reporter_role"]
    )
    return reporter_message(row["case_id"], reporter, row["received_at"])


def intake_outbox(db: Database, broker: KafkaBroker) -> Outbox:
    """Intake's outbox (service `intake`): reporter details and their erasures."""
    return Outbox(db, broker, "intake")


MAX_KEY_BYTES = 1024
MAX_REASONS = 100


def rejected_message(event: ReportRejectedV1, key: bytes | None) -> OutgoingMessage:
    """The rejection on `helpline.reports.rejected`, bounded in size: keyed by the refused
    message's own key, cut to 1 KiB (the event's `key_size` says when)."""
    return cloudevents.event_message(
        REPORTS_REJECTED.name,
        event,
        event_id=event.event_id,
        key=key[:MAX_KEY_BYTES] if key else key,
        type_="helpline.report.rejected.v1",
        source=SOURCE,
        time=event.rejected_at,
    )


def rejection(
    raw: bytes,
    reasons: list[RejectionReason],
    *,
    via: Channel,
    record: Record | None = None,
) -> ReportRejectedV1:
    """The rejection event; what it carries of `raw` is redacted (see `redaction`)."""
    rid = derive_id("rejected", position(record)) if record is not None else uuid.uuid4()
    withheld: Literal["too_large", "not_json"] | None = None
    too_large = any(r.type == "too_large" for r in reasons)
    shown = None if too_large else redact(raw)
    if shown is None:
        withheld, shown = ("too_large" if too_large else "not_json"), b""
    elif len(shown) > MAX_MESSAGE_BYTES:
        withheld, shown = "too_large", b""
    if len(reasons) > MAX_REASONS:
        more = len(reasons) - (MAX_REASONS - 1)
        reasons = [
            *reasons[: MAX_REASONS - 1],
            RejectionReason(loc="", message=f"{more} more problems not listed", type="too_many"),
        ]
    key = record.key if record is not None else None
    return ReportRejectedV1(
        event_id=rid,
        rejected_at=utcnow(),
        via=via,
        source_topic=record.topic if record else None,
        source_partition=record.partition if record else None,
        source_offset=record.offset if record else None,
        key=key[:MAX_KEY_BYTES].decode("utf-8", "replace") if key else None,
        key_size=len(key) if key and len(key) > MAX_KEY_BYTES else None,
        reasons=reasons,
        original_base64=base64.b64encode(shown).decode(),
        original_withheld=withheld,
    )


def refusal(exc: asyncpg.DataError) -> str:
    """Why the database refused a value, without the value (it may be personal data)."""
    text = str(exc)
    reason = text[text.rfind("(") + 1 : text.rfind(")")] if "(" in text else ""
    return f"{type(exc).__name__}: {reason[:200]}" if reason else type(exc).__name__


class Intake:
    def __init__(
        self,
        db: Database,
        broker: KafkaBroker,
        dead_letters: DeadLetters,
        *,
        allow_simulated: bool = False,
        outbox: Outbox | None = None,
    ) -> None:
        self._allow_simulated = allow_simulated
        self.outbox = outbox or intake_outbox(db, broker)
        self._db = db
        self._broker = broker
        self._dead = dead_letters

    async def process(self, records: Sequence[Record]) -> None:
        """Handle one consumed batch; see the module docstring for the guarantees."""
        received_at = utcnow()
        valid: list[tuple[Record, StoredReport]] = []
        rejected: list[tuple[Record, ReportRejectedV1]] = []
        for record in records:
            result = validate_report(record.value, allow_simulated=self._allow_simulated)
            if isinstance(result, ReportSubmittedV1):
                case_id = case_id_for(result)
                tracing.follows(record, case_id)  # its case.opened continues its trace
                valid.append((record, StoredReport(case_id, result, "kafka", received_at)))
            else:
                event = rejection(record.value or b"", result, via="kafka", record=record)
                rejected.append((record, event))

        self._dead.admit(records, [r for r, _ in rejected])
        out: list[OutgoingMessage] = []
        dead: list[tuple[Record, str]] = []
        try:
            out += await self._store(valid, rejected)
        except asyncpg.DataError:
            # One message the database refuses must not block the others: retry alone.
            for one in valid:
                try:
                    out += await self._store([one], [])
                except asyncpg.DataError as exc:
                    dead.append((one[0], f"database refused it: {refusal(exc)}"))
            kept = []
            for record, event in rejected:
                try:
                    await self._store([], [(record, event)])
                    kept.append((record, event))
                except asyncpg.DataError as exc:
                    dead.append((record, f"database refused it: {refusal(exc)}"))
            rejected = kept
        await publish_all(self._broker, out + [rejected_message(e, r.key) for r, e in rejected])
        # The reporters this batch queued, before its offsets are committed: a failure here
        # redelivers the batch, and the rows stay queued for the next relay.
        await self.outbox.drain()
        for record, error in dead:
            self._dead.add(record, error)
        for record, event in rejected:
            with bind_event(event_id=event.event_id):
                log.info(
                    "report rejected",
                    position=position(record),
                    reasons=[f"{r.loc}: {r.type}" for r in event.reasons],
                )

    async def _store(
        self,
        valid: Sequence[tuple[Record, StoredReport]],
        rejected: Sequence[tuple[Record, ReportRejectedV1]],
    ) -> list[OutgoingMessage]:
        """Store one batch in one transaction; returns the `case.opened` events, and the
        rejections of conflicting resubmissions, to publish."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            fresh = await repository.claim_positions(conn, [position(r) for r, _ in valid])
            inserted = {
                r["case_id"]: r
                for r in await repository.insert_reports(conn, [s for _, s in valid])
            }
            hashes = await repository.stored_hashes(conn, [s.case_id for _, s in valid])
            duplicates: list[uuid.UUID] = []
            republish: list[uuid.UUID] = []
            conflicts: list[tuple[Record, ReportRejectedV1]] = []
            opened: set[uuid.UUID] = set()
            for record, stored in valid:
                cid = stored.case_id
                if cid in inserted and cid not in opened:
                    opened.add(cid)
                elif hashes.get(cid) not in (None, content_hash(stored.report)):
                    # Other content under a stored id: refused, never merged or discarded.
                    refused = rejection(record.value, conflict(), via="kafka", record=record)
                    conflicts.append((record, refused))
                elif position(record) in fresh:
                    duplicates.append(cid)
                elif cid not in inserted:
                    # Redelivered after an earlier attempt stored it: that attempt may not
                    # have published, so publish the stored report again (same event id).
                    republish.append(cid)
            await self.outbox.add(conn, [opened_reporter_message(r) for r in inserted.values()])
            await repository.count_duplicates(conn, duplicates)
            await repository.insert_rejections(
                conn, [(e, r.value) for r, e in [*rejected, *conflicts]]
            )
            rows = [*inserted.values(), *await repository.stored_reports(conn, republish)]
        for row in rows:
            with bind_event(
                case_id=row["case_id"], event_id=derive_id("case.opened", row["case_id"])
            ):
                log.debug("case opened")
        for record, event in conflicts:
            with bind_event(event_id=event.event_id):
                log.info(
                    "report rejected", position=position(record), reasons=["report_id: conflict"]
                )
        return [opened_message(row) for row in rows] + [
            rejected_message(e, r.key) for r, e in conflicts
        ]
