"""Triage's tables (schema `triage`): each case's decision and the content each case reported.

A decision is written once per case (the first write wins) together with the content its
case reported, in the caller's transaction; the event it holds is the one published, then
and on every redelivery.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from helpline_shared.db import Conn
from helpline_shared.events import CaseTriagedV1

Content = tuple[str, str]  # (platform, canonical URL)


@dataclass(frozen=True)
class Decision:
    """A decision to keep: the event, its exact published text, what it was decided from."""

    event: CaseTriagedV1
    text: str
    prior_reports: int
    contents: Sequence[Content]


async def stored_events(conn: Conn, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The published event text of every case among `case_ids` already decided."""
    rows = await conn.fetch(
        "SELECT case_id, event FROM triage.decisions WHERE case_id = ANY($1::uuid[])",
        list(case_ids),
    )
    return {r["case_id"]: r["event"] for r in rows}


async def report_counts(conn: Conn, contents: Iterable[Content]) -> dict[Content, int]:
    """How many cases already reported each content (absent: none)."""
    keys = sorted(set(contents))
    if not keys:
        return {}
    rows = await conn.fetch(
        """
        SELECT r.platform, r.canonical_url, count(*) AS n
        FROM triage.content_reports r
        JOIN unnest($1::text[], $2::text[]) AS k(platform, canonical_url)
          USING (platform, canonical_url)
        GROUP BY r.platform, r.canonical_url
        """,
        [p for p, _ in keys],
        [u for _, u in keys],
    )
    return {(r["platform"], r["canonical_url"]): r["n"] for r in rows}


def _jsonable(value: Any) -> Any:
    # jsonb cannot hold U+0000; the published text (a text column, JSON-escaped) keeps it.
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


async def save(conn: Conn, decisions: Sequence[Decision]) -> None:
    """Insert each decision unless its case has one, and the content its case reported."""
    if not decisions:
        return
    events = [d.event for d in decisions]
    await conn.executemany(
        """
        INSERT INTO triage.decisions (case_id, event_id, received_at, decided_at, harm_types,
            lead_harm_type, urgency, route, decision_due_at, rules_version, rules_fired,
            matches, urls, prior_reports, event)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        ON CONFLICT (case_id) DO NOTHING
        """,
        [
            (
                e.case_id,
                e.event_id,
                e.received_at,
                e.triaged_at,
                list(e.harm_types),
                e.lead_harm_type,
                e.urgency,
                e.route,
                e.decision_due_at,
                e.rules_version,
                list(e.rules_fired),
                _jsonable([m.model_dump(mode="json") for m in e.matches]),
                _jsonable([u.model_dump(mode="json") for u in e.urls]),
                d.prior_reports,
                d.text,
            )
            for d, e in zip(decisions, events, strict=True)
        ],
    )
    reports = [(p, u, d.event.case_id) for d in decisions for p, u in dict.fromkeys(d.contents)]
    if reports:
        await conn.execute(
            """
            INSERT INTO triage.content_reports (platform, canonical_url, case_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
            ON CONFLICT DO NOTHING
            """,
            [p for p, _, _ in reports],
            [u for _, u, _ in reports],
            [c for _, _, c in reports],
        )
