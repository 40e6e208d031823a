"""Escalator's tables: escalations (one per content, shared by the cases linked to it, see
:mod:`helpline_escalator.links`) and attempts (one per platform call).

An attempt row is written, with the escalation claimed, in the same transaction before the
platform is called; a claim whose lease expired means the process died mid-call.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from helpline_shared.db import Conn

_ACTIVE = "state IN ('queued', 'retrying', 'submitted', 'in_flight')"
# Never the hotline's (reported by the hotline worker, never to the platform), nor a
# notice marked for withdrawal (the withdrawal loop's) unless a lookup must settle it.
_CLAIMABLE = (
    "(claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $3))"
    " AND route <> 'hotline' AND (withdraw_requested_at IS NULL OR state = 'in_flight')"
)
# Candidates per urgency, each an index range in due order (migration 0010), so a claim
# reads about what it claims however many escalations of the platform are due; then the
# rows are locked and the conditions checked again on what is locked.
_CLAIM = f"""
WITH candidates AS (
    SELECT c.escalation_id, u.rank
    FROM unnest($4::text[]) WITH ORDINALITY AS u(urgency, rank)
    CROSS JOIN LATERAL (
        SELECT escalation_id FROM escalator.escalations
        WHERE platform = $1 AND urgency = u.urgency AND {_ACTIVE}
          AND next_action_at <= now() AND {_CLAIMABLE}
        ORDER BY next_action_at
        LIMIT $2 * 2
    ) c
    UNION ALL
    (SELECT escalation_id, NULL FROM escalator.escalations
     WHERE platform = $1 AND {_ACTIVE} AND urgency NOT IN ('critical', 'high', 'normal')
       AND urgency <> ALL($4::text[]) AND next_action_at <= now() AND {_CLAIMABLE}
     ORDER BY next_action_at
     LIMIT $2 * 2)
),
due AS (
    SELECT e.escalation_id, e.state AS prior, e.claimed_at AS prior_claim
    FROM escalator.escalations e JOIN candidates c USING (escalation_id)
    WHERE e.state IN ('queued', 'retrying', 'submitted', 'in_flight')
      AND e.next_action_at <= now()
      AND (e.claimed_at IS NULL OR e.claimed_at < now() - make_interval(secs => $3))
      AND e.route <> 'hotline'
      AND (e.withdraw_requested_at IS NULL OR e.state = 'in_flight')
    ORDER BY c.rank NULLS LAST, e.next_action_at
    LIMIT $2
    FOR UPDATE OF e SKIP LOCKED
)
UPDATE escalator.escalations e
SET claimed_at = now(),
    updated_at = now(),
    state = CASE WHEN d.prior IN ('queued', 'retrying') THEN 'in_flight' ELSE e.state END,
    attempts = e.attempts + CASE WHEN d.prior IN ('queued', 'retrying') THEN 1 ELSE 0 END,
    lookups = e.lookups + CASE WHEN d.prior = 'in_flight' THEN 1 ELSE 0 END,
    status_checks = e.status_checks + CASE WHEN d.prior = 'submitted' THEN 1 ELSE 0 END,
    -- A submit goes out before its lease ends; the worker records when it really went out.
    last_sent_at = CASE WHEN d.prior IN ('queued', 'retrying')
                        THEN now() + make_interval(secs => $3) ELSE e.last_sent_at END
FROM due d
WHERE e.escalation_id = d.escalation_id
RETURNING e.*, d.prior, d.prior_claim IS NOT NULL AS reclaimed
"""


@dataclass(frozen=True)
class Claim:
    row: asyncpg.Record
    kind: str  # submit | status | lookup
    attempt_id: uuid.UUID


async def claim_due(
    conn: Conn,
    platform: str,
    limit: int,
    lease_s: float,
    *,
    urgency_order: Sequence[str],
    lost_attempts: list[uuid.UUID] | None = None,
) -> list[Claim]:
    """Claim due escalations of one platform and record an attempt for each, atomically.

    The most urgent are claimed first (`urgency_order`, most urgent first, and every
    urgency the event schema allows), then the longest due; any other urgency last.

    Reclaiming an escalation whose lease expired (the process holding it died) first
    closes every attempt of it still open, whatever its kind, as `lost`: every attempt
    ends with a result; their ids are appended to `lost_attempts` (for their activity
    events, queued in the same transaction).
    """
    rows = await conn.fetch(_CLAIM, platform, limit, lease_s, list(urgency_order))
    claims = [
        Claim(
            row,
            {"queued": "submit", "retrying": "submit", "submitted": "status"}.get(
                row["prior"], "lookup"
            ),
            uuid.uuid4(),
        )
        for row in rows
    ]
    if claims:
        lost = [c.row["escalation_id"] for c in claims if c.row["reclaimed"]]
        if lost:
            closed = await conn.fetch(
                """UPDATE escalator.attempts SET result = 'lost', finished_at = now(),
                       error = 'process stopped during the call; its claim expired'
                   WHERE escalation_id = ANY($1::uuid[]) AND result IS NULL
                   RETURNING attempt_id""",
                lost,
            )
            if lost_attempts is not None:
                lost_attempts.extend(r["attempt_id"] for r in closed)
        await conn.execute(
            """INSERT INTO escalator.attempts (attempt_id, escalation_id, kind)
               SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])""",
            [c.attempt_id for c in claims],
            [c.row["escalation_id"] for c in claims],
            [c.kind for c in claims],
        )
    return claims


@dataclass(frozen=True)
class Update:
    """The new state of a claimed escalation and how its attempt ended."""

    escalation_id: uuid.UUID
    claimed_at: datetime
    attempt_id: uuid.UUID
    state: str
    next_action_at: datetime
    decision: str | None
    platform_reference: str | None
    reason: str | None
    result: str
    http_status: int | None
    error: str | None
    sent_at: datetime | None = None  # when a submit's request went out
    uncounted: bool = False  # a failed half-open probe: not one of the escalation's attempts


async def apply_updates(conn: Conn, updates: Sequence[Update]) -> set[uuid.UUID]:
    """Finish the attempts; write new states and release claims still held by the caller.

    An escalation whose claim was taken over (lease expired, reconciled elsewhere) keeps
    the newer state: the stale result is recorded on its attempt only. Returns the ids of
    the escalations updated.
    """
    if not updates:
        return set()
    rows = await conn.fetch(
        """
        UPDATE escalator.escalations e
        SET state = u.state, next_action_at = u.next_at, claimed_at = NULL, updated_at = now(),
            decision = COALESCE(u.decision, e.decision),
            platform_reference = COALESCE(u.ref, e.platform_reference),
            reason = u.reason,
            decided_at = CASE WHEN u.state = 'decided' THEN now() ELSE e.decided_at END,
            last_sent_at = COALESCE(u.sent_at, e.last_sent_at),
            attempts = e.attempts - CASE WHEN u.uncounted THEN 1 ELSE 0 END
        FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                    $6::text[], $7::timestamptz[], $8::timestamptz[], $9::bool[])
            AS u(id, state, next_at, decision, ref, reason, claimed_at, sent_at, uncounted)
        WHERE e.escalation_id = u.id AND e.claimed_at = u.claimed_at
        RETURNING e.escalation_id
        """,
        [u.escalation_id for u in updates],
        [u.state for u in updates],
        [u.next_action_at for u in updates],
        [u.decision for u in updates],
        [u.platform_reference for u in updates],
        [u.reason for u in updates],
        [u.claimed_at for u in updates],
        [u.sent_at for u in updates],
        [u.uncounted for u in updates],
    )
    await conn.execute(
        """
        UPDATE escalator.attempts a
        SET finished_at = now(), result = u.result, http_status = u.status, error = u.error
        FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[]) AS u(id, result, status, error)
        WHERE a.attempt_id = u.id
        """,
        [u.attempt_id for u in updates],
        [u.result for u in updates],
        [u.http_status for u in updates],
        [u.error for u in updates],
    )
    return {r["escalation_id"] for r in rows}


NOT_SENT = "released before the call: it would have outlived its lease"


@dataclass(frozen=True)
class Release:
    """A claim given back without counting against the escalation: its call never went
    out (`not_sent`), the platform refused our credentials (a configuration error, not
    the escalation's failure), or it was the failed half-open probe of an outage.
    `next_action_at` (now when None) and `reason` say when it is due again and why it
    waits."""

    escalation_id: uuid.UUID
    claimed_at: datetime
    attempt_id: uuid.UUID
    kind: str  # submit | status | lookup
    next_action_at: datetime | None = None
    reason: str | None = None
    result: str = "not_sent"
    http_status: int | None = None
    error: str = NOT_SENT


async def release_claims(conn: Conn, releases: Sequence[Release]) -> None:
    """Undo claims: the escalation is due again as it was before the claim (a submit back
    to its queue, its attempt count restored), at `next_action_at`, with `reason`; the
    attempt ends with the release's result. A claim already taken over elsewhere is left
    to its new holder."""
    if not releases:
        return
    await conn.execute(
        """
        UPDATE escalator.escalations e
        SET claimed_at = NULL, updated_at = now(),
            next_action_at = COALESCE(u.next_at, now()),
            reason = COALESCE(u.reason, e.reason),
            state = CASE WHEN u.kind = 'submit' THEN
                        CASE WHEN e.attempts > 1 THEN 'retrying' ELSE 'queued' END
                    ELSE e.state END,
            attempts = e.attempts - CASE WHEN u.kind = 'submit' THEN 1 ELSE 0 END,
            lookups = e.lookups - CASE WHEN u.kind = 'lookup' THEN 1 ELSE 0 END,
            status_checks = e.status_checks - CASE WHEN u.kind = 'status' THEN 1 ELSE 0 END
        FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::timestamptz[], $5::text[])
            AS u(id, claimed_at, kind, next_at, reason)
        WHERE e.escalation_id = u.id AND e.claimed_at = u.claimed_at
        """,
        [r.escalation_id for r in releases],
        [r.claimed_at for r in releases],
        [r.kind for r in releases],
        [r.next_action_at for r in releases],
        [r.reason for r in releases],
    )
    await conn.execute(
        """
        UPDATE escalator.attempts a
        SET finished_at = now(), result = u.result, http_status = u.status, error = u.error
        FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[]) AS u(id, result, status, error)
        WHERE a.attempt_id = u.id
        """,
        [r.attempt_id for r in releases],
        [r.result for r in releases],
        [r.http_status for r in releases],
        [r.error for r in releases],
    )


async def park(conn: Conn, platform: str, until: datetime, reason: str) -> int:
    """Make every unclaimed escalation of `platform` wait until `until` (when its circuit
    lets a probe through), with `reason`; one statement, nothing loaded. Returns how many."""
    status = await conn.execute(
        f"""UPDATE escalator.escalations SET next_action_at = $2, reason = $3, updated_at = now()
            WHERE platform = $1 AND {_ACTIVE} AND claimed_at IS NULL AND next_action_at < $2""",
        platform,
        until,
        reason,
    )
    return int(status.split()[-1])


async def unpark(conn: Conn, platform: str) -> int:
    """Clear the circuit's reason from `platform`'s waiting escalations once it closed."""
    status = await conn.execute(
        f"""UPDATE escalator.escalations SET reason = NULL, updated_at = now()
            WHERE platform = $1 AND {_ACTIVE} AND claimed_at IS NULL
              AND reason LIKE 'circuit open for %'""",
        platform,
    )
    return int(status.split()[-1])
