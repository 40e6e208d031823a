"""Triage's tables (schema `triage`): each case's decisions and the content each case reported.

Triage's own decision (revision 1) is written once per case (the first write wins) together
with the content its case reported, in the caller's transaction; each practitioner override
adds the next revision, once per command (its event id is derived from the command id). The
event a row holds is the one published, then and on every redelivery.
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
    deadline_source: str | None = None


async def stored_events(conn: Conn, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The published event text of triage's own decision (revision 1) of every case among
    `case_ids` already decided."""
    rows = await conn.fetch(
        "SELECT case_id, event FROM triage.decisions"
        " WHERE case_id = ANY($1::uuid[]) AND revision = 1",
        list(case_ids),
    )
    return {r["case_id"]: r["event"] for r in rows}


async def decided_cases(conn: Conn, case_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """The cases among `case_ids` that have a decision."""
    rows = await conn.fetch(
        "SELECT DISTINCT case_id FROM triage.decisions WHERE case_id = ANY($1::uuid[])",
        list(case_ids),
    )
    return {r["case_id"] for r in rows}


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
    """Insert each decision unless its case has one with its revision, and the content its
    case reported."""
    if not decisions:
        return
    events = [d.event for d in decisions]
    await conn.executemany(
        """
        INSERT INTO triage.decisions (case_id, event_id, received_at, decided_at, harm_types,
            lead_harm_type, urgency, route, decision_due_at, rules_version, rules_fired,
            matches, urls, prior_reports, event, revision, supersedes, overridden_by,
            override_note, deadline_source)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
            $18, $19, $20)
        ON CONFLICT (case_id, revision) DO NOTHING
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
                e.revision,
                e.supersedes,
                e.overridden_by,
                e.override_note,
                d.deadline_source,
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


async def lock_case(conn: Conn, case_id: uuid.UUID) -> None:
    """Serialise, until the transaction ends, with anyone else overriding this case."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7))", str(case_id))


async def latest(conn: Conn, case_id: uuid.UUID) -> tuple[str, int] | None:
    """The case's latest decision (published text, prior reports), or None if undecided."""
    row = await conn.fetchrow(
        """SELECT event, prior_reports FROM triage.decisions WHERE case_id = $1
           ORDER BY revision DESC LIMIT 1""",
        case_id,
    )
    return None if row is None else (row["event"], row["prior_reports"])


async def event_text(conn: Conn, event_id: uuid.UUID) -> str | None:
    """The published text of the decision with this event id, if one was stored."""
    text: str | None = await conn.fetchval(
        "SELECT event FROM triage.decisions WHERE event_id = $1", event_id
    )
    return text


async def history(conn: Conn, case_id: uuid.UUID) -> list[CaseTriagedV1]:
    """Every decision of the case, oldest first."""
    rows = await conn.fetch(
        "SELECT event FROM triage.decisions WHERE case_id = $1 ORDER BY revision", case_id
    )
    return [CaseTriagedV1.model_validate_json(r["event"]) for r in rows]
