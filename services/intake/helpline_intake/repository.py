"""Intake's tables. Every write is idempotent: replaying a batch changes nothing."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from helpline_intake.validation import content_hash
from helpline_shared.db import Conn
from helpline_shared.events import (
    PriorReport,
    ReportRejectedV1,
    ReportSubmittedV1,
    ReportSubmittedV2,
)


@dataclass(frozen=True)
class StoredReport:
    case_id: uuid.UUID
    report: ReportSubmittedV1
    via: str
    received_at: datetime


def prior_report(report: ReportSubmittedV1) -> PriorReport | None:
    """What a version 2 report says of its report to the platform (None for version 1)."""
    return report.prior_report if isinstance(report, ReportSubmittedV2) else None


def child_affected(report: ReportSubmittedV1) -> bool | None:
    """Whether a version 2 report says a child is affected (None for version 1, or not known)."""
    return report.child_affected if isinstance(report, ReportSubmittedV2) else None


def stored_prior_report(row: asyncpg.Record | Mapping[str, Any]) -> PriorReport | None:
    """The prior report kept with a stored report (None when it was a version 1 report)."""
    if row.get("prior_reported") is None:
        return None
    return PriorReport(
        reported_to_platform=row["prior_reported"],
        reported_at=row["prior_reported_at"],
        platform_answer=row["prior_platform_answer"],
        platform_reference=row["prior_platform_reference"],
    )


async def claim_positions(conn: Conn, positions: Sequence[str]) -> set[str]:
    """Record Kafka positions as processed; returns those seen for the first time."""
    rows = await conn.fetch(
        """INSERT INTO intake.inbox (position) SELECT unnest($1::text[])
           ON CONFLICT DO NOTHING RETURNING position""",
        list(positions),
    )
    return {r["position"] for r in rows}


async def stored_hashes(conn: Conn, case_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    """The content hash of each stored report among `case_ids` (None if stored before
    hashes were kept)."""
    if not case_ids:
        return {}
    rows = await conn.fetch(
        "SELECT case_id, content_hash FROM intake.reports WHERE case_id = ANY($1::uuid[])",
        list(set(case_ids)),
    )
    return {r["case_id"]: r["content_hash"] for r in rows}


async def insert_reports(conn: Conn, reports: Sequence[StoredReport]) -> list[asyncpg.Record]:
    """Insert reports not stored yet; returns the rows inserted."""
    if not reports:
        return []
    priors = [prior_report(s.report) for s in reports]
    return await conn.fetch(
        """
        INSERT INTO intake.reports (case_id, source, report_id, via, received_at, submitted_at,
            reporter_name, reporter_email, reporter_role, organisation, description, urls,
            issue_types, content_hash, schema_version, prior_reported, prior_reported_at,
            prior_platform_answer, prior_platform_reference, child_affected)
        SELECT u.case_id, u.source, u.report_id, u.via, u.received_at, u.submitted_at,
            u.reporter_name, u.reporter_email, u.reporter_role, u.organisation, u.description,
            ARRAY(SELECT jsonb_array_elements_text(u.urls::jsonb)),
            ARRAY(SELECT jsonb_array_elements_text(u.issue_types::jsonb)), u.content_hash,
            u.schema_version, u.prior_reported, u.prior_reported_at, u.prior_platform_answer,
            u.prior_platform_reference, u.child_affected
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
            $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::text[], $14::text[], $15::smallint[], $16::boolean[],
            $17::timestamptz[], $18::text[], $19::text[], $20::boolean[])
          AS u(case_id, source, report_id, via, received_at, submitted_at, reporter_name,
            reporter_email, reporter_role, organisation, description, urls, issue_types,
            content_hash, schema_version, prior_reported, prior_reported_at,
            prior_platform_answer, prior_platform_reference, child_affected)
        ON CONFLICT DO NOTHING
        RETURNING *
        """,
        [s.case_id for s in reports],
        [s.report.source for s in reports],
        [s.report.report_id for s in reports],
        [s.via for s in reports],
        [s.received_at for s in reports],
        [s.report.submitted_at for s in reports],
        [s.report.reporter.name for s in reports],
        [str(s.report.reporter.email) for s in reports],
        [s.report.reporter.role for s in reports],
        [s.report.organisation for s in reports],
        [s.report.description for s in reports],
        [json.dumps(s.report.urls) for s in reports],
        [json.dumps(s.report.issue_types) for s in reports],
        [content_hash(s.report) for s in reports],
        [s.report.schema_version for s in reports],
        [p.reported_to_platform if p else None for p in priors],
        [p.reported_at if p else None for p in priors],
        [p.platform_answer if p else None for p in priors],
        [p.platform_reference if p else None for p in priors],
        [child_affected(s.report) for s in reports],
    )


async def stored_reports(conn: Conn, case_ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    if not case_ids:
        return []
    return await conn.fetch(
        "SELECT * FROM intake.reports WHERE case_id = ANY($1::uuid[])", list(set(case_ids))
    )


async def count_duplicates(conn: Conn, case_ids: Sequence[uuid.UUID]) -> None:
    """Add one to `duplicates` for each occurrence of a case id in `case_ids`."""
    if case_ids:
        await conn.execute(
            """UPDATE intake.reports r SET duplicates = r.duplicates + d.n
               FROM (SELECT c, count(*) AS n FROM unnest($1::uuid[]) AS c GROUP BY c) d
               WHERE r.case_id = d.c""",
            list(case_ids),
        )


async def insert_rejections(
    conn: Conn, rejections: Sequence[tuple[ReportRejectedV1, bytes | None]]
) -> None:
    """Record refusals with their reasons and the refused bytes (kept here only)."""
    if rejections:
        await conn.executemany(
            """INSERT INTO intake.rejections (rejection_id, rejected_at, via, reasons, original)
               VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING""",
            [
                (e.event_id, e.rejected_at, e.via, [r.model_dump() for r in e.reasons], raw)
                for e, raw in rejections
            ],
        )


async def purge_originals(conn: Conn, older_than_days: int) -> int:
    """Clear the refused bytes of rejections older than `older_than_days`; returns how
    many. The rejection, its reasons and its count stay."""
    status = await conn.execute(
        """UPDATE intake.rejections SET original = NULL
           WHERE original IS NOT NULL
             AND rejected_at < now() - make_interval(days => $1)""",
        older_than_days,
    )
    return int(status.split()[-1])
