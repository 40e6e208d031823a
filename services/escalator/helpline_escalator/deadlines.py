"""Deadlines: a breach announced once, then the platform re-notified at an interval.

Every `deadline_scan_interval_s` the loop looks for escalations still waiting for the
platform (queued, in flight, retrying, submitted or waiting for a person) whose decision
deadline has passed: `due_at`, the earliest `decision_due_at` triage gave their cases, or
for an escalation made before due times were kept, its urgency's deadline after the report
was received (`HELPLINE_DEADLINE_<URGENCY>_S`, else the rules data's hours).

Promises:
- `breached` is announced once per escalation, to every case linked to it, on
  `helpline.escalations.outcomes` (with the due time and the follow-ups so far): the row
  is marked (`breached_at`) under its lock in the transaction that queues the events on
  the outbox, and the state is recorded once (see :mod:`helpline_escalator.outcomes`).
- A breached escalation the platform holds a notice for (state submitted, a platform
  reference, route platform) is re-notified with a follow-up citing that reference, never
  a second notice: at the breach, then every `renotify_interval_s`, at most
  `renotify_max` times, until it is decided. Each follow-up sent is counted on the
  escalation (`followups`) and is an activity event (kind `followup`) queued in the
  transaction that records it; one the platform refused, or that failed, is an event too.
  An escalation breached before its notice went out is re-notified once it is submitted;
  one waiting for a person (no reference) breaches but is not re-notified; nor is the
  hotline route or a manual one (a person chases those).
- Safe with several escalator processes: rows are claimed with `FOR UPDATE SKIP
  LOCKED`, and a follow-up in flight holds its row for the claim lease
  (`next_followup_at` moved past it), so no two processes send the same follow-up. A
  process that dies mid-call leaves the follow-up to be sent again once the lease ends
  (its attempt closed as lost): the platform may then count one follow-up twice, which
  only ever chases, never re-reports.
- A platform whose circuit is open (its worker's breaker lets no call out) is sent no
  follow-up until it closes: they wait, uncounted.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from helpline_escalator.activity import finish_attempt, start_attempt
from helpline_escalator.adapters.base import (
    AdapterError,
    NeedsManualError,
    PermanentError,
    PlatformAdapter,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.outcomes import Reached, announce
from helpline_shared.db import Conn, Database
from helpline_shared.events import utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings

log = get_logger("helpline.escalator.deadlines")

# The rules data's deadline per urgency (triage's rules.json `urgency_levels`, checked equal
# by tests/test_deadlines.py): used only for escalations without a due time of their own.
RULES_DEADLINE_HOURS = {"critical": 24, "high": 72, "normal": 168}
WAITING = ("queued", "in_flight", "retrying", "submitted", "needs_manual")
_WAITING_SQL = ", ".join(f"'{s}'" for s in WAITING)

AdapterFor = Callable[[str], PlatformAdapter | None]
# The platforms no call may go to now (their circuit is open): their work waits.
Paused = Callable[[], Sequence[str]]


def deadline_s(settings: Settings, urgency: str) -> float:
    """An urgency's decision deadline in seconds: the setting, else the rules data's."""
    given = {
        "critical": settings.deadline_critical_s,
        "high": settings.deadline_high_s,
        "normal": settings.deadline_normal_s,
    }.get(urgency)
    if given is not None:
        return float(given)
    return RULES_DEADLINE_HOURS.get(urgency, RULES_DEADLINE_HOURS["normal"]) * 3600.0


# Due: `due_at`, else received_at + the urgency's deadline ($1-$3 critical, high, other).
_DUE = """COALESCE(due_at, received_at + make_interval(secs => CASE urgency
    WHEN 'critical' THEN $1::float8 WHEN 'high' THEN $2::float8 ELSE $3::float8 END))"""
_BREACH = f"""
WITH candidates AS (
    (SELECT escalation_id FROM escalator.escalations
     WHERE breached_at IS NULL AND state IN ({_WAITING_SQL}) AND due_at <= now()
     ORDER BY due_at LIMIT $4)
    UNION ALL
    (SELECT escalation_id FROM escalator.escalations
     WHERE breached_at IS NULL AND due_at IS NULL AND state IN ({_WAITING_SQL})
       AND {_DUE} <= now()
     ORDER BY received_at LIMIT $4)
),
due AS (
    SELECT e.escalation_id FROM escalator.escalations e JOIN candidates USING (escalation_id)
    WHERE e.breached_at IS NULL AND e.state IN ({_WAITING_SQL}) AND e.decision IS NULL
    LIMIT $4
    FOR UPDATE OF e SKIP LOCKED
)
UPDATE escalator.escalations e
SET breached_at = now(), updated_at = now(),
    next_followup_at = CASE WHEN e.route = 'platform' AND $5::int > 0 THEN now() END
FROM due WHERE e.escalation_id = due.escalation_id
RETURNING e.escalation_id, e.case_id, e.platform, e.platform_reference, e.attempts,
          e.followups, e.route, e.state, e.reason, {_DUE} AS due
"""

# Follow-ups due: claimed (next_followup_at moved to the lease's end) when the platform
# holds the notice; one not yet submitted is looked at again after an interval; one that
# no longer waits, or has had its follow-ups, gets none more.
_CLAIM_FOLLOWUPS = f"""
WITH due AS (
    SELECT escalation_id FROM escalator.escalations
    WHERE next_followup_at <= now() AND platform <> ALL($5::text[])
    ORDER BY next_followup_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE escalator.escalations e
SET next_followup_at = CASE
        WHEN e.followups >= $2 OR e.decision IS NOT NULL OR e.state NOT IN ({_WAITING_SQL})
            THEN NULL
        WHEN e.state = 'submitted' AND e.platform_reference IS NOT NULL
            THEN now() + make_interval(secs => $3)
        ELSE now() + make_interval(secs => $4)
    END
FROM due WHERE e.escalation_id = due.escalation_id
RETURNING e.escalation_id, e.case_id, e.platform, e.platform_reference, e.followups,
          e.next_followup_at,
          (e.followups < $2 AND e.decision IS NULL AND e.state = 'submitted'
           AND e.platform_reference IS NOT NULL) AS send
"""


@dataclass(frozen=True)
class Called:
    """How one call to a platform ended: its result, or the adapter's typed error."""

    result: PlatformResult | None
    error: AdapterError | None

    @property
    def attempt_result(self) -> str:
        if self.error is None:
            return "ok"
        if isinstance(self.error, PermanentError | NeedsManualError):
            return "permanent"
        return "retryable"  # the platform may take it later (or our credentials are fixed)

    @property
    def http_status(self) -> int | None:
        """The HTTP status the platform answered with, when it answered."""
        if self.error is not None:
            return self.error.http_status
        return self.result.http_status if self.result is not None else None

    @property
    def final(self) -> bool:
        """The platform will not take this call, whenever it is repeated."""
        return isinstance(self.error, PermanentError | NeedsManualError)


async def call_once(call: Any) -> Called:
    """Await one adapter call; its typed errors are answers, anything else propagates."""
    try:
        return Called(await call, None)
    except AdapterError as exc:
        return Called(None, exc)


async def call_and_record(
    db: Database,
    outbox: Outbox,
    claimed: Sequence[tuple[Any, uuid.UUID]],
    call: Callable[[Any], Awaitable[Called]],
    record: Callable[[Conn, Any, uuid.UUID, Called], Awaitable[list[OutgoingMessage]]],
) -> None:
    """Make the call of each claimed row (paired with the attempt started for it) all at
    once, then `record` each answer and queue its events in a transaction of its own: one
    row is never held while waiting for another (a platform worker finishing a batch may
    hold that one and wait for this). A call that raised anything but an adapter's answer
    is a bug: it is raised once the others are recorded, and its claim runs out its lease."""
    results = await asyncio.gather(*(call(row) for row, _ in claimed), return_exceptions=True)
    done = [
        (row, attempt_id, called)
        for (row, attempt_id), called in zip(claimed, results, strict=True)
        if isinstance(called, Called)
    ]
    for row, attempt_id, called in done:
        async with db.pool.acquire() as conn, conn.transaction():
            await outbox.add(conn, await record(conn, row, attempt_id, called))
    if done:
        outbox.wake()
    for failure in results:
        if isinstance(failure, BaseException):
            raise failure


async def close_lost(conn: Conn, escalation_ids: list[uuid.UUID], kind: str) -> None:
    """Attempts of `kind` still open for these escalations were cut short by a process that
    stopped mid-call (the row's lease ran out): they end as lost."""
    if escalation_ids:
        await conn.execute(
            """UPDATE escalator.attempts SET result = 'lost', finished_at = now(),
                   error = 'process stopped during the call; its claim expired'
               WHERE escalation_id = ANY($1::uuid[]) AND kind = $2 AND result IS NULL""",
            escalation_ids,
            kind,
        )


def breach_reason(due: datetime, state: str, waiting_because: str | None) -> str:
    """Why the escalation is breached; one waiting for a person keeps why it waits."""
    reason = f"no decision by its deadline ({due.isoformat()})"
    if state != "submitted" and waiting_because:
        reason += f"; waiting for a person: {waiting_because}"
    return reason


def retry_in_s(called: Called, interval_s: float) -> float:
    """When a call that failed may be tried again: the platform's Retry-After, else
    within the interval (and at most a minute)."""
    error = called.error
    if isinstance(error, RetryableError) and error.retry_after_s:
        return float(error.retry_after_s)
    return min(interval_s, 60.0)


class DeadlineWatch:
    """The escalator's deadline loop (see the module's promises)."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        settings: Settings,
        adapter_for: AdapterFor,
        paused: Paused = tuple,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._adapter_for = adapter_for
        self._paused = paused
        self._loop: WorkLoop | None = None

    async def breach(self) -> int:
        """Announce `breached` for every escalation whose deadline passed with no
        decision (a batch at most); returns how many."""
        s = self._settings
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _BREACH,
                deadline_s(s, "critical"),
                deadline_s(s, "high"),
                deadline_s(s, "normal"),
                s.escalation_claim_batch,
                s.renotify_max,
            )
            now = utcnow()
            reached = [
                Reached(
                    r["escalation_id"],
                    "breached",
                    r["attempts"],
                    now,
                    reference=r["platform_reference"],
                    reason=breach_reason(r["due"], r["state"], r["reason"]),
                    due_at=r["due"],
                    followups=r["followups"],
                )
                for r in rows
            ]
            await self._outbox.add(conn, await announce(conn, reached))
        for r in rows:
            with bind_event(case_id=r["case_id"], event_id=r["escalation_id"]):
                log.info("decision deadline passed", platform=r["platform"], state=r["state"])
        if rows:
            self._outbox.wake()
        return len(rows)

    async def follow_up(self) -> int:
        """Send the follow-ups that are due (a batch at most); returns how many rows were
        looked at."""
        s = self._settings
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _CLAIM_FOLLOWUPS,
                s.escalation_claim_batch,
                s.renotify_max,
                s.escalation_claim_lease_s,
                s.renotify_interval_s,
                list(self._paused()),
            )
            sending = [r for r in rows if r["send"]]
            await close_lost(conn, [r["escalation_id"] for r in sending], "followup")
            claimed = [
                (r, await start_attempt(conn, r["escalation_id"], "followup")) for r in sending
            ]
        await call_and_record(self._db, self._outbox, claimed, self._send, self._record)
        return len(rows)

    async def _send(self, row: Any) -> Called:
        adapter = self._adapter_for(row["platform"])
        count = row["followups"] + 1
        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            if adapter is None:
                return Called(None, NeedsManualError(f"{row['platform']}: no adapter"))
            called = await call_once(adapter.follow_up(row["platform_reference"], count))
            if called.error is not None:
                log.warning("follow-up failed", count=count, error=called.error.reason)
            else:
                log.info("follow-up sent", platform=row["platform"], count=count)
            return called

    async def _record(
        self, conn: Conn, row: Any, attempt_id: uuid.UUID, called: Called
    ) -> list[OutgoingMessage]:
        """Count a follow-up sent and set when the next is due; end its attempt."""
        s = self._settings
        sent = called.error is None
        if sent:
            later: float | None = s.renotify_interval_s
        elif called.final:
            later = None
        else:
            later = retry_in_s(called, s.renotify_interval_s)
        await conn.execute(
            """UPDATE escalator.escalations
               SET followups = followups + $2::int, updated_at = now(),
                   next_followup_at = CASE
                       WHEN next_followup_at IS DISTINCT FROM $3 THEN next_followup_at
                       WHEN $4::float8 IS NULL OR followups + $2::int >= $5 THEN NULL
                       ELSE now() + make_interval(secs => $4::float8) END
               WHERE escalation_id = $1""",
            row["escalation_id"],
            1 if sent else 0,
            row["next_followup_at"],
            later,
            s.renotify_max,
        )
        error = called.error
        return await finish_attempt(
            conn,
            attempt_id,
            called.attempt_result,
            http_status=called.http_status,
            error=error.reason if error else None,
        )

    async def _step(self) -> bool:
        breached = await self.breach()
        looked_at = await self.follow_up()
        return breached >= self._settings.escalation_claim_batch or (
            looked_at >= self._settings.escalation_claim_batch
        )

    def start(self) -> None:
        self._loop = WorkLoop(
            "deadlines",
            self._step,
            idle_s=self._settings.deadline_scan_interval_s,
            probes=[self._db.ready],
        )
        self._loop.start()

    async def stop(self, timeout_s: float) -> None:
        """Stop after the step in hand, so the follow-ups it sent are recorded."""
        loop, self._loop = self._loop, None
        if loop is not None:
            await loop.stop(timeout_s)
