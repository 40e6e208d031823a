"""Re-triage: a practitioner's override (a CaseTriagedV1 with revision > 1) moves a case's
URLs to the escalation of their new route; the notice it leaves behind is withdrawn.

Promises, in the caller's transaction (before the case's URLs are linked again by
:func:`helpline_escalator.links.link_cases`):
- Each URL whose route changed is unlinked from its old escalation (the link row stays,
  marked `unlinked_at`, for the history) and then linked to its new route's escalation
  with the decision's revision, so its events there have their own ids.
- If no other case remains on the old escalation: a notice not sent yet (queued, or
  waiting for a person with nothing sent) is cancelled and announced `withdrawn` at
  once; one the platform has (or may have) is marked for withdrawal, and the withdrawal
  loop (:class:`Withdrawals`) asks the platform to withdraw it and announces `withdrawn`,
  saying whether the platform withdrew it or offers no withdrawal (the notice stands).
  A queued notice marked for withdrawal is never sent. A decided or closed escalation is
  left as it is. The moved case hears `withdrawn`, though it is no longer linked.
- A URL whose route did not change keeps its escalation; a more urgent decision raises
  the urgency of a notice not sent yet and brings its due time forward, as for a new case.
- Idempotent and ordered: a decision whose revision is not newer than the URL's current
  link changes nothing, so a redelivery (or an older revision arriving late) does nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from helpline_escalator.activity import attempt_messages
from helpline_escalator.adapters.base import (
    AdapterError,
    NeedsManualError,
    PermanentError,
    PlatformAdapter,
)
from helpline_escalator.commands import NEVER
from helpline_escalator.links import REPORTED_AGAIN, WAITING, escalation_id
from helpline_escalator.outcomes import Reached, announce
from helpline_escalator.severity import most_severe_first, orders
from helpline_shared.db import Conn, Database
from helpline_shared.events import CaseTriagedV1, TriagedUrl, utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.outbox import Outbox

log = get_logger("helpline.escalator.retriage")

NO_WITHDRAWAL = "the platform offers no withdrawal; the notice stands"
HOTLINE_STANDS = "a report to the national hotline is not withdrawn; it stands"
WITHDRAWN = "withdrawn at the platform after a re-triage changed the route"


@dataclass
class Moved:
    """What re-triaging a batch did: events to queue, and whether withdrawals wait."""

    outcomes: list[OutgoingMessage] = field(default_factory=list)
    withdrawals: int = 0


def _rank(urgency: str) -> int:
    ranks = {u: i for i, u in enumerate(orders().urgencies)}
    return ranks.get(urgency, len(ranks))


async def retriage(conn: Conn, cases: Sequence[CaseTriagedV1]) -> Moved:
    """Apply the re-triaged `cases` (revision > 1) to the links of their URLs; see the
    module's promises. Call before linking the same cases."""
    moved = Moved()
    for case in cases:
        for url in case.urls:
            await _retriage_url(conn, case, url, moved)
    return moved


async def _retriage_url(conn: Conn, case: CaseTriagedV1, url: TriagedUrl, moved: Moved) -> None:
    link = await conn.fetchrow(
        """SELECT * FROM escalator.escalation_cases
           WHERE case_id = $1 AND url_id = $2 AND unlinked_at IS NULL FOR UPDATE""",
        case.case_id,
        url.url_id,
    )
    if link is None or link["revision"] >= case.revision:
        return  # not linked yet (link_cases links it), or this decision is not newer
    old_id: uuid.UUID = link["escalation_id"]
    old = await conn.fetchrow(
        "SELECT * FROM escalator.escalations WHERE escalation_id = $1 FOR UPDATE", old_id
    )
    if escalation_id(url) == old_id:
        await _same_route(conn, case, link, old)
        return
    with bind_event(case_id=case.case_id, event_id=old_id):
        others = await conn.fetchval(
            """SELECT count(*) FROM escalator.escalation_cases
               WHERE escalation_id = $1 AND unlinked_at IS NULL AND case_id <> $2""",
            old_id,
            case.case_id,
        )
        if others == 0:
            await _leave(conn, old, url.route, moved)
        await conn.execute(
            """UPDATE escalator.escalation_cases SET unlinked_at = now()
               WHERE escalation_id = $1 AND case_id = $2""",
            old_id,
            case.case_id,
        )
        await conn.execute(
            """UPDATE escalator.escalations
               SET linked_cases = greatest(1, linked_cases - 1), updated_at = now()
               WHERE escalation_id = $1""",
            old_id,
        )
        log.info("re-triage moved the URL to another route", route=url.route)
    # A URL moved back to an escalation it had left: its old link becomes current again.
    await conn.execute(
        """UPDATE escalator.escalation_cases SET unlinked_at = NULL, revision = $3
           WHERE escalation_id = $1 AND case_id = $2 AND unlinked_at IS NOT NULL""",
        escalation_id(url),
        case.case_id,
        case.revision,
    )


async def _same_route(conn: Conn, case: CaseTriagedV1, link: Any, row: Any) -> None:
    await conn.execute(
        """UPDATE escalator.escalation_cases
           SET revision = $3, urgency = $4, harm_types = $5
           WHERE escalation_id = $1 AND case_id = $2""",
        link["escalation_id"],
        case.case_id,
        case.revision,
        case.urgency,
        list(case.harm_types),
    )
    due = case.decision_due_at
    if row["state"] in WAITING:
        urgency = case.urgency if _rank(case.urgency) < _rank(row["urgency"]) else row["urgency"]
        harm = list(most_severe_first(set(row["harm_types"]) | set(case.harm_types)))
    else:
        urgency, harm = row["urgency"], list(row["harm_types"])
    await conn.execute(
        """UPDATE escalator.escalations
           SET urgency = $2, harm_types = $3, due_at = LEAST(due_at, $4), updated_at = now()
           WHERE escalation_id = $1""",
        row["escalation_id"],
        urgency,
        harm,
        due,
    )


async def _leave(conn: Conn, row: Any, route: str, moved: Moved) -> None:
    """The last case left escalation `row` (locked): cancel what was not sent, mark for
    withdrawal what the platform has or may have."""
    state: str = row["state"]
    unsent = row["claimed_at"] is None and (
        state in WAITING or (state == "needs_manual" and row["platform_reference"] is None)
    )
    if unsent:
        reason = f"re-triage moved the case to the {route} route before anything was sent"
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'withdrawn', reason = $2, next_action_at = $3,
                   withdraw_requested_at = now(), updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            reason,
            NEVER,
        )
        moved.outcomes += await announce(
            conn,
            [Reached(row["escalation_id"], "withdrawn", row["attempts"], utcnow(), reason=reason)],
        )
        return
    if state in ("queued", "retrying", "in_flight", "submitted", "needs_manual"):
        await conn.execute(
            """UPDATE escalator.escalations
               SET withdraw_requested_at = now(), updated_at = now(),
                   next_action_at = CASE WHEN state = 'in_flight' THEN next_action_at
                                         ELSE now() END
               WHERE escalation_id = $1""",
            row["escalation_id"],
        )
        moved.withdrawals += 1


class Withdrawals:
    """The withdrawal loop: withdraws at the platform every escalation a re-triage left
    with no case, once no other call of it is in hand, and announces `withdrawn` to the
    cases that left it.

    Each withdrawal is an attempt (kind `withdrawal`) claimed like a platform worker's
    (the escalation's `claimed_at`, with the same lease), so two escalator processes never
    withdraw one notice twice at once; the state, the attempt's result, its activity event
    and the outcome events are stored in one transaction. A retryable failure is tried
    again later (backing off); a refusal (the platform already decided), a platform
    without withdrawal and a manual channel end it `withdrawn` with the reason saying
    the notice stands."""

    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        adapter_for: Callable[[Any], PlatformAdapter | None],
        *,
        lease_s: float,
        retry_s: float,
        call_timeout_s: float,
        idle_s: float,
        batch: int = 20,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._adapter_for = adapter_for
        self._lease_s = lease_s
        self._retry_s = retry_s
        self._call_timeout_s = call_timeout_s
        self._batch = batch
        self._loop = WorkLoop("withdrawals", self._step, idle_s=idle_s, probes=[db.ready])

    def wake(self) -> None:
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self, timeout_s: float) -> None:
        await self._loop.stop(timeout_s)

    async def _step(self) -> bool:
        return await self.step() > 0

    async def step(self) -> int:
        """Handle one batch of due withdrawals; returns how many."""
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """
                UPDATE escalator.escalations e SET claimed_at = now(), updated_at = now()
                FROM (SELECT escalation_id FROM escalator.escalations
                      WHERE withdraw_requested_at IS NOT NULL
                        AND state IN ('queued', 'retrying', 'submitted', 'needs_manual')
                        AND next_action_at <= now()
                        AND (claimed_at IS NULL
                             OR claimed_at < now() - make_interval(secs => $1))
                      ORDER BY next_action_at LIMIT $2
                      FOR UPDATE SKIP LOCKED) d
                WHERE e.escalation_id = d.escalation_id
                RETURNING e.*
                """,
                self._lease_s,
                self._batch,
            )
            calls: list[tuple[Any, uuid.UUID]] = []
            messages: list[OutgoingMessage] = []
            for row in rows:
                if row["platform_reference"] is None:  # nothing was sent: cancel it
                    messages += await self._withdrawn(
                        conn,
                        row,
                        "re-triage moved the case to another route before the "
                        "notice was sent; it will not be sent",
                    )
                    continue
                attempt_id = uuid.uuid4()
                await conn.execute(
                    """INSERT INTO escalator.attempts (attempt_id, escalation_id, kind)
                       VALUES ($1, $2, 'withdrawal')""",
                    attempt_id,
                    row["escalation_id"],
                )
                calls.append((row, attempt_id))
            await self._outbox.add(conn, messages)
        if messages:
            self._outbox.wake()
        results = await asyncio.gather(*(self._withdraw(row) for row, _ in calls))
        if calls:
            async with self._db.pool.acquire() as conn, conn.transaction():
                out: list[OutgoingMessage] = []
                for (row, attempt_id), (result, status, error, reason) in zip(
                    calls, results, strict=True
                ):
                    await conn.execute(
                        """UPDATE escalator.attempts
                           SET finished_at = now(), result = $2, http_status = $3, error = $4
                           WHERE attempt_id = $1""",
                        attempt_id,
                        result,
                        status,
                        error,
                    )
                    if reason is None:  # try again later
                        await conn.execute(
                            """UPDATE escalator.escalations
                               SET claimed_at = NULL, next_action_at = $3, updated_at = now()
                               WHERE escalation_id = $1 AND claimed_at = $2""",
                            row["escalation_id"],
                            row["claimed_at"],
                            utcnow() + timedelta(seconds=self._retry_s),
                        )
                    else:
                        mine = await conn.fetchrow(
                            """SELECT withdraw_requested_at FROM escalator.escalations
                               WHERE escalation_id = $1 AND claimed_at = $2 FOR UPDATE""",
                            row["escalation_id"],
                            row["claimed_at"],
                        )
                        if mine and mine["withdraw_requested_at"] is not None:
                            out += await self._withdrawn(conn, row, reason)
                        elif mine:  # a case reported it again while the call was out
                            out += await self._rejoined(conn, row, attempt_id, reason)
                    out += await attempt_messages(conn, [attempt_id])
                await self._outbox.add(conn, out)
            self._outbox.wake()
        return len(rows)

    async def _withdraw(self, row: Any) -> tuple[str, int | None, str | None, str | None]:
        """Ask the platform; returns the attempt's result, HTTP status and error, and the
        reason to announce `withdrawn` with (None: retry later)."""
        adapter = self._adapter_for(row)
        if adapter is None:
            return (
                "permanent",
                None,
                "no adapter",
                (f"{row['platform']}: no automated channel; withdraw the notice by hand"),
            )
        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            try:
                done, status = await asyncio.wait_for(
                    adapter.withdraw_answered(row["platform_reference"]), self._call_timeout_s
                )
            except TimeoutError:
                return "retryable", None, "no answer within the call budget", None
            except NeedsManualError as exc:
                return (
                    "permanent",
                    exc.http_status,
                    exc.reason,
                    (
                        f"the platform offers no automated withdrawal ({exc.reason}); "
                        "the notice stands"
                    ),
                )
            except PermanentError as exc:
                return (
                    "permanent",
                    exc.http_status,
                    exc.reason,
                    (f"the platform refused the withdrawal ({exc.reason}); the notice stands"),
                )
            except AdapterError as exc:
                log.warning("withdrawal failed; trying again later", error=exc.reason)
                return "retryable", exc.http_status, exc.reason, None
        if done:
            return "ok", status, None, WITHDRAWN
        if row["route"] == "hotline":
            return "ok", status, None, HOTLINE_STANDS
        return "ok", status, None, NO_WITHDRAWAL

    async def _rejoined(
        self, conn: Conn, row: Any, attempt_id: uuid.UUID, reason: str
    ) -> list[OutgoingMessage]:
        """A case linked to the escalation while its withdrawal was out (the request was
        dropped): if the platform withdrew the notice a person decides what next, else the
        notice stands and is chased as before."""
        if reason != WITHDRAWN:
            await conn.execute(
                """UPDATE escalator.escalations
                   SET claimed_at = NULL, next_action_at = now(), updated_at = now()
                   WHERE escalation_id = $1""",
                row["escalation_id"],
            )
            return []
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'needs_manual', reason = $2, claimed_at = NULL,
                   next_action_at = $3, updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            REPORTED_AGAIN,
            NEVER,
        )
        again = Reached(
            row["escalation_id"],
            "needs_manual",
            row["attempts"],
            utcnow(),
            reference=row["platform_reference"],
            reason=REPORTED_AGAIN,
            occurrence=f"rejoined-{attempt_id}",
        )
        return await announce(conn, [again])

    async def _withdrawn(self, conn: Conn, row: Any, reason: str) -> list[OutgoingMessage]:
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'withdrawn', reason = $2, claimed_at = NULL, next_action_at = $3,
                   updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            reason,
            NEVER,
        )
        return await announce(
            conn,
            [
                Reached(
                    row["escalation_id"],
                    "withdrawn",
                    row["attempts"],
                    utcnow(),
                    reference=row["platform_reference"],
                    reason=reason,
                )
            ],
        )
