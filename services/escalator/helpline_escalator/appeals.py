"""Appeals: a practitioner's request to contest a "no violation" decision, sent on the
platform's appeal route and followed to its result.

A practitioner's `appeal` command marks the escalation (`appeal_requested_at`, with the
actor and the note; see :mod:`helpline_escalator.commands`). This loop then:
- sends the appeal (`adapter.appeal(reference, note)`), stores the appeal's reference,
  moves the escalation to `appealed` and announces `appealed` with the actor and note;
- asks for its result (`adapter.appeal_status`), at a doubling interval from
  `escalation_status_interval_s` up to `escalation_status_max_interval_s`, and once the
  platform decided moves the escalation to `appeal_decided` with the new decision and
  announces `appeal_decided` with `decision` and `overturned` (the new decision differs
  from the one contested);
- makes every call an attempt of kind `appeal`, ended in the transaction that records its
  result and reported as an activity event there.

Promises: `appealed` and `appeal_decided` are each announced once per escalation, to every
linked case, in the transaction that stores the state (the outbox). A platform that refuses
the appeal ends the request without a state: the activity event says why, and a
practitioner may ask again. One with no automated appeal route (a manual channel, or no
appeal route configured) is announced `appealed` with a reason beginning
`APPEAL_BY_HAND`: it waits in the practitioners' queue for a person to appeal by hand and
record the platform's answer (a `platform_decision`, taken as the appeal's outcome: see
:mod:`helpline_escalator.commands`). Calls that
fail for a while are retried (Retry-After honoured). Rows are claimed with `FOR UPDATE SKIP
LOCKED` and held for the claim lease while their call is out, so several escalator
processes never send one appeal twice at once; a process that dies mid-call leaves the
appeal to be sent again after the lease, which the platform answers with the same appeal.
A platform whose circuit is open gets no call until it closes: its appeals wait.
"""

from __future__ import annotations

import uuid
from typing import Any

from helpline_escalator.activity import finish_attempt, start_attempt
from helpline_escalator.adapters.base import NeedsManualError, PlatformAdapter
from helpline_escalator.commands import NEVER
from helpline_escalator.deadlines import (
    AdapterFor,
    Called,
    DeadlineWatch,
    Paused,
    call_and_record,
    call_once,
    close_lost,
    retry_in_s,
)
from helpline_escalator.dispatcher import Dispatcher
from helpline_escalator.outcomes import Reached, announce
from helpline_shared.db import Conn, Database
from helpline_shared.events import utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings

log = get_logger("helpline.escalator.appeals")

# How an appeal that waits for a person is announced (`appealed`): its reason begins so.
APPEAL_BY_HAND = "no automated appeal route, appeal by hand"

_CLAIM = """
WITH due AS (
    SELECT escalation_id FROM escalator.escalations
    WHERE appeal_requested_at IS NOT NULL AND appeal_decided_at IS NULL
      AND COALESCE(appeal_next_at, appeal_requested_at) <= now()
      AND platform <> ALL($3::text[])
    ORDER BY COALESCE(appeal_next_at, appeal_requested_at)
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE escalator.escalations e
SET appeal_next_at = now() + make_interval(secs => $2)
FROM due WHERE e.escalation_id = due.escalation_id
RETURNING e.*
"""


class AppealDesk:
    """The escalator's appeal loop (see the module's promises)."""

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

    def wake(self) -> None:
        """Look for requested appeals now (a command just marked one)."""
        if self._loop is not None:
            self._loop.wake()

    async def step(self) -> int:
        """Send the requested appeals and ask for the results that are due (a batch at
        most); returns how many escalations were acted on."""
        s = self._settings
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _CLAIM, s.escalation_claim_batch, s.escalation_claim_lease_s, list(self._paused())
            )
            await close_lost(conn, [r["escalation_id"] for r in rows], "appeal")
            claimed = [(r, await start_attempt(conn, r["escalation_id"], "appeal")) for r in rows]
        await call_and_record(self._db, self._outbox, claimed, self._call, self._record)
        return len(rows)

    async def _call(self, row: Any) -> Called:
        adapter = self._adapter_for(row["platform"])
        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            if adapter is None:
                return Called(None, NeedsManualError(f"{row['platform']}: no adapter"))
            reference = row["platform_reference"]
            if row["appeal_reference"] is None:
                call = adapter.appeal(reference, row["appeal_note"] or "")
            else:
                call = adapter.appeal_status(reference, row["appeal_reference"])
            called = await call_once(call)
            if called.error is not None:
                log.warning("appeal call failed", error=called.error.reason)
            return called

    async def _record(
        self, conn: Conn, row: Any, attempt_id: uuid.UUID, called: Called
    ) -> list[OutgoingMessage]:
        """Store what the call says, announce the states reached, end the attempt."""
        s = self._settings
        eid = row["escalation_id"]
        error = called.error
        messages = await finish_attempt(
            conn,
            attempt_id,
            called.attempt_result,
            http_status=called.http_status,
            error=error.reason if error else None,
        )
        # The row is still ours only while it holds the lease this step gave it.
        still_ours = (
            "SELECT 1 FROM escalator.escalations WHERE escalation_id = $1 AND appeal_next_at = $2"
            " FOR UPDATE"
        )
        if await conn.fetchval(still_ours, eid, row["appeal_next_at"]) is None:
            return messages
        if (
            isinstance(called.error, NeedsManualError)
            and row["appeal_reference"] is None
            and row["state"] == "decided"
        ):  # no automated appeal route: a person appeals, then records the answer
            return messages + await self._by_hand(conn, row, called.error.reason)
        if called.final:  # refused by the platform: the request ends here
            await conn.execute(
                """UPDATE escalator.escalations
                   SET appeal_requested_at = NULL, appeal_next_at = NULL, updated_at = now()
                   WHERE escalation_id = $1""",
                eid,
            )
            return messages
        if called.result is None:  # failed for now: again later
            delay = retry_in_s(called, s.escalation_status_interval_s)
            await self._again_in(conn, eid, delay, checked=False)
            return messages
        now = utcnow()
        reached: list[Reached] = []
        appeal_reference = row["appeal_reference"]
        contested = row["appealed_decision"] or row["decision"]
        if appeal_reference is None:
            appeal_reference = called.result.reference
            await conn.execute(
                """UPDATE escalator.escalations
                   SET appeal_reference = $2, appeal_sent_at = now(), appealed_decision = $3,
                       state = 'appealed', updated_at = now()
                   WHERE escalation_id = $1""",
                eid,
                appeal_reference,
                contested,
            )
            reached.append(
                Reached(
                    eid,
                    "appealed",
                    row["attempts"],
                    now,
                    decision=contested,
                    reference=row["platform_reference"],
                    reason=f"appeal {appeal_reference} on the platform's appeal route",
                    actor=row["appeal_actor"],
                    note=row["appeal_note"],
                    followups=row["followups"],
                )
            )
        decision = called.result.decision
        if decision is None:
            interval = min(
                s.escalation_status_max_interval_s,
                s.escalation_status_interval_s * 2 ** row["appeal_checks"],
            )
            await self._again_in(conn, eid, interval, checked=row["appeal_reference"] is not None)
        else:
            overturned = decision != contested
            await conn.execute(
                """UPDATE escalator.escalations
                   SET state = 'appeal_decided', decision = $2, appeal_decision = $2,
                       appeal_overturned = $3, appeal_decided_at = now(), appeal_next_at = NULL,
                       updated_at = now()
                   WHERE escalation_id = $1""",
                eid,
                decision,
                overturned,
            )
            reached.append(
                Reached(
                    eid,
                    "appeal_decided",
                    row["attempts"],
                    now,
                    decision=decision,
                    reference=row["platform_reference"],
                    reason=f"appeal {appeal_reference} "
                    + ("overturned the decision" if overturned else "upheld the decision"),
                    overturned=overturned,
                    followups=row["followups"],
                )
            )
            with bind_event(case_id=row["case_id"], event_id=eid):
                log.info("appeal decided", platform=row["platform"], overturned=overturned)
        return messages + await announce(conn, reached)

    @staticmethod
    async def _by_hand(conn: Conn, row: Any, why: str) -> list[OutgoingMessage]:
        """`appealed`, waiting for a person to appeal by hand and record the platform's
        answer (a `platform_decision`, which the commands take as the appeal's outcome);
        the loop never claims it again."""
        contested = row["appealed_decision"] or row["decision"]
        await conn.execute(
            """UPDATE escalator.escalations
               SET state = 'appealed', appealed_decision = $2, appeal_next_at = $3,
                   updated_at = now()
               WHERE escalation_id = $1""",
            row["escalation_id"],
            contested,
            NEVER,
        )
        reached = Reached(
            row["escalation_id"],
            "appealed",
            row["attempts"],
            utcnow(),
            decision=contested,
            reference=row["platform_reference"],
            reason=f"{APPEAL_BY_HAND}: {why}; record the platform's answer as its decision",
            actor=row["appeal_actor"],
            note=row["appeal_note"],
            followups=row["followups"],
        )
        return await announce(conn, [reached])

    @staticmethod
    async def _again_in(conn: Conn, eid: uuid.UUID, delay_s: float, *, checked: bool) -> None:
        await conn.execute(
            """UPDATE escalator.escalations
               SET appeal_next_at = now() + make_interval(secs => $2::float8),
                   appeal_checks = appeal_checks + $3::int, updated_at = now()
               WHERE escalation_id = $1""",
            eid,
            delay_s,
            1 if checked else 0,
        )

    async def _step(self) -> bool:
        return await self.step() >= self._settings.escalation_claim_batch

    def start(self) -> None:
        self._loop = WorkLoop(
            "appeals",
            self._step,
            idle_s=self._settings.escalation_poll_interval_s,
            probes=[self._db.ready],
        )
        self._loop.start()

    async def stop(self, timeout_s: float) -> None:
        """Stop after the step in hand, so the calls it made are recorded."""
        loop, self._loop = self._loop, None
        if loop is not None:
            await loop.stop(timeout_s)


def deadline_and_appeal_loops(
    db: Database, outbox: Outbox, settings: Settings, dispatcher: Dispatcher
) -> list[DeadlineWatch | AppealDesk]:
    """The escalator's deadline and appeal loops, to start after its platform workers and
    stop with them; they call each platform through its worker's adapter, and none whose
    worker's circuit is open."""

    def adapter_for(slug: str) -> PlatformAdapter | None:
        worker = dispatcher.workers.get(slug)
        return worker.adapter if worker is not None else None

    def paused() -> list[str]:
        return [slug for slug, w in dispatcher.workers.items() if w.breaker.waiting()]

    return [
        DeadlineWatch(db, outbox, settings, adapter_for, paused),
        AppealDesk(db, outbox, settings, adapter_for, paused),
    ]
