"""Per-platform dispatch: submit notices, chase decisions, reconcile interrupted calls.

One worker per platform, each with its own concurrency bound and rate limit, so a slow or
failing platform never holds up another. A worker claims due escalations and records an
attempt for each in one transaction *before* calling the platform; it then writes the new
states, finishes the attempts and queues the outcome events in one transaction (the
outbox), so an outcome is published if and only if its state is stored; each state goes
to every case linked to the escalation (one notice per content, one outcome per case). An escalation
whose claim outlived the lease (the process died mid-call) is looked up on the platform by
our reference and never blindly re-sent. No call starts once it could still be running
when its claim's lease expires (waits for a slot, the rate limit or a database connection
included): such a claim is released unsent, so a claim never outlives its lease in hand.

Each worker has a circuit breaker (:mod:`helpline_escalator.breaker`). While its circuit is
open the worker claims nothing and the platform's waiting escalations carry the circuit's
reason and are due when the half-open probe may go; a claim whose call the breaker refuses
is released unsent (not counted against the escalation), and so is one whose call the
platform refused for our credentials (a configuration error, logged once at error level).
Only calls made while the circuit is closed count towards an escalation's `max_attempts`:
a failed half-open probe releases its escalation uncounted, to wait with the circuit's
reason (a probe's submit that may have arrived is looked up next, also uncounted), so a
long outage never fails the escalations that wait for it.

Every finished attempt (submit, status, lookup, and one a reclaim closes as `lost`) is an
activity event queued in the transaction that finishes it (:mod:`helpline_escalator.
activity`); a claim released before its call made none. Platform workers never claim a
hotline-route escalation (the :class:`HotlineWorker` reports it to the national hotline)
nor one marked for withdrawal after a re-triage (the withdrawal loop's), except an
in-flight one whose lookup must settle first.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, get_args

import asyncpg
from aiolimiter import AsyncLimiter

from helpline_escalator.activity import attempt_messages
from helpline_escalator.adapters.base import (
    AdapterError,
    Notice,
    PlatformAdapter,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.adapters.hotline import HotlineAdapter, Receipt
from helpline_escalator.breaker import (
    BreakerPolicy,
    CircuitBreaker,
    Pass,
    is_configuration_error,
)
from helpline_escalator.commands import NEVER
from helpline_escalator.links import HOTLINE_REASON
from helpline_escalator.outcomes import Reached, announce
from helpline_escalator.repository import (
    Claim,
    Release,
    Update,
    apply_updates,
    claim_due,
    park,
    release_claims,
    unpark,
)
from helpline_escalator.severity import most_severe_first, orders
from helpline_escalator.transitions import Policy, after_failure, after_success
from helpline_shared.db import Conn, Database
from helpline_shared.events import Urgency, utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.loop import WorkLoop
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings

log = get_logger("helpline.escalator.dispatch")


class LeaseDeadlineError(Exception):
    """A claim's call could no longer start in time to finish within the claim's lease."""


class CircuitWaitError(Exception):
    """The platform's circuit breaker let no call go out (open, probe out, Retry-After)."""


@dataclass(frozen=True)
class Step:
    update: Update
    reached: Reached | None  # the state to announce to every linked case, if any


def notice_for(row: asyncpg.Record | Mapping[str, Any], settings: Settings) -> Notice:
    """The DSA notice for an escalation row: why, which URL, who notifies, in good faith.
    Nothing about the reporter: the helpline is the notifier. Harm types are listed most
    severe first (`severity.json`), so the most severe decides the notice's category, unless
    triage's rules gave the DSA category and the platform's reason code (they win)."""
    harm = most_severe_first(row["harm_types"])
    return Notice(
        client_reference=row["escalation_id"],
        url=row["url"],
        harm_types=harm,
        urgency=row["urgency"],
        explanation=(
            "Reported to the helpline by a professional working with children. "
            f"Harm: {', '.join(h.replace('_', ' ') for h in harm)}; urgency: "
            f"{row['urgency']}. The content targets school staff, pupils or a school "
            "and breaches the platform's terms; we ask for its removal."
        ),
        notifier_name=settings.notifier_name,
        notifier_email=settings.notifier_email,
        category=row.get("dsa_category"),
        reason_code=row.get("reason_code"),
    )


def claim_order() -> tuple[str, ...]:
    """Urgencies most urgent first (`severity.json`), then any other the events allow, so
    that every urgency an escalation can have is claimed by its own index range."""
    listed = orders().urgencies
    return listed + tuple(u for u in get_args(Urgency) if u not in listed)


def rate_limiter(per_s: float) -> AsyncLimiter:
    """A limiter allowing `per_s` calls a second on average. Below one a second it allows
    one call per `1 / per_s` seconds (aiolimiter refuses a capacity below one call)."""
    if per_s >= 1:
        return AsyncLimiter(per_s, 1)
    return AsyncLimiter(1, 1 / per_s)


class PlatformWorker:
    def __init__(
        self,
        adapter: PlatformAdapter,
        db: Database,
        outbox: Outbox,
        settings: Settings,
        breaker: BreakerPolicy | None = None,
    ) -> None:
        self.adapter = adapter
        self.breaker = CircuitBreaker(adapter.slug, breaker)
        self._parked = False  # the platform's backlog carries the open circuit's reason
        self._park_due = False
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._limiter = rate_limiter(settings.platform_rate_per_s)
        self._in_flight = asyncio.Semaphore(settings.platform_concurrency)
        self._policy = Policy(
            max_attempts=settings.escalation_max_attempts,
            retry_base_s=settings.escalation_retry_base_s,
            retry_max_s=settings.escalation_retry_max_s,
            status_interval_s=settings.escalation_status_interval_s,
            status_max_s=settings.escalation_status_max_interval_s,
        )
        self._loops: list[WorkLoop] = []

    def wake(self) -> None:
        for loop in self._loops:
            loop.wake()

    def settle_s(self) -> float:
        """The platform's settle period, unless the settings override every platform's."""
        override = self._settings.platform_settle_s
        return float(self.adapter.settle_s if override is None else override)

    def _unsettled_s(self, row: asyncpg.Record) -> float:
        """How much of the settle period is left since the notice was last sent."""
        last_sent: datetime | None = row["last_sent_at"]
        if last_sent is None:
            return 0.0
        elapsed = (utcnow() - last_sent).total_seconds()
        return max(0.0, self.settle_s() - elapsed)

    @contextlib.asynccontextmanager
    async def _turn(self, deadline: float) -> AsyncIterator[None]:
        """A concurrency slot and a rate-limit token, or `LeaseDeadlineError` once the loop's clock
        passes `deadline` (the last moment a call can start and still end in its lease)."""
        slot = False
        try:
            async with asyncio.timeout_at(deadline):
                await self._in_flight.acquire()
                slot = True
                await self._limiter.acquire()
        except TimeoutError:
            if slot:
                self._in_flight.release()
            raise LeaseDeadlineError from None
        try:
            yield
        finally:
            self._in_flight.release()

    async def _call(
        self, claim: Claim, deadline: float, sent: list[datetime], passes: list[Pass]
    ) -> PlatformResult | None:
        """One platform call, once a concurrency slot and the rate limit allow it before
        `deadline`; appends to `sent` the time the request goes out and to `passes` what
        the breaker granted (an ordinary call or the half-open probe)."""
        row = claim.row
        call: Coroutine[Any, Any, PlatformResult | None]
        async with self._turn(deadline):
            granted = self.breaker.admit()
            if granted is None:
                raise CircuitWaitError
            passes.append(granted)
            sent.append(utcnow())
            if claim.kind == "submit":
                call = self.adapter.submit(notice_for(row, self._settings))
            elif claim.kind == "status":
                call = self.adapter.status(row["platform_reference"])
            else:
                call = self.adapter.lookup(row["escalation_id"])
            try:
                result = await asyncio.wait_for(call, self.call_budget_s())
            except TimeoutError as exc:  # the request may have gone out
                error = RetryableError(
                    f"{self.adapter.slug}: no answer within the call budget", maybe_received=True
                )
                self._tell_breaker(granted, error)
                raise error from exc
            except AdapterError as exc:
                self._tell_breaker(granted, exc)
                raise
            except BaseException:
                self.breaker.abandon(granted)
                raise
            self.breaker.succeeded(granted)
            return result

    def _tell_breaker(self, granted: Pass, error: AdapterError) -> None:
        """Feed a failed call to the breaker; log a credentials refusal once per incident."""
        if is_configuration_error(error):
            if self.breaker.refuse_credentials(granted):
                log.error(
                    "platform refused our credentials: configuration error; its circuit is "
                    "open until it accepts them",
                    platform=self.adapter.slug,
                    http_status=error.http_status,
                )
            self._park_due = True
        elif isinstance(error, RetryableError):
            if self.breaker.failed(granted, error):
                self._park_due = True
                log.warning(
                    "circuit opened",
                    platform=self.adapter.slug,
                    reason=self.breaker.reason,
                    resume_in_s=round(self.breaker.resume_in_s(), 1),
                )
        else:  # the platform answered: it refused the notice itself, or needs a person
            self.breaker.succeeded(granted)

    async def _act(self, claim: Claim, deadline: float) -> Step | Release:
        row = claim.row
        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            try:
                return await self._answer(claim, deadline)
            except LeaseDeadlineError:
                log.warning("claim released before its call: it would outlive its lease")
                return Release(
                    row["escalation_id"], row["claimed_at"], claim.attempt_id, claim.kind
                )
            except CircuitWaitError:
                reason = self.breaker.reason or f"{self.adapter.slug}: waiting"
                return Release(
                    row["escalation_id"],
                    row["claimed_at"],
                    claim.attempt_id,
                    claim.kind,
                    next_action_at=self.breaker.resume_at(),
                    reason=reason,
                    error=f"not sent: {reason}",
                )

    async def _answer(self, claim: Claim, deadline: float) -> Step | Release:
        row = claim.row
        attempts: int = row["attempts"]
        # Only the adapter's typed errors are platform answers; anything else is a bug
        # and propagates (see `step`), never read as "maybe received".
        sent: list[datetime] = []
        passes: list[Pass] = []
        try:
            result = await self._call(claim, deadline, sent, passes)
        except AdapterError as exc:
            error: AdapterError | None = exc
        else:
            error = None
        probe = passes == [Pass.PROBE]
        resend_safe = claim.kind != "submit" or not getattr(error, "maybe_received", False)
        if error is not None and (
            is_configuration_error(error)
            or (probe and isinstance(error, RetryableError) and resend_safe)
        ):
            # Our configuration's fault, or the outage's (a probe asks whether the platform
            # is back, not whether the notice can go): the escalation waits, uncounted. A
            # probed submit that may have arrived is looked up instead, below.
            return Release(
                row["escalation_id"],
                row["claimed_at"],
                claim.attempt_id,
                claim.kind,
                next_action_at=self.breaker.resume_at(),
                reason=self.breaker.reason,
                result="retryable",
                http_status=error.http_status,
                error=error.reason,
            )
        if error is None:
            t = after_success(
                claim.kind,
                result,
                attempts=attempts,
                policy=self._policy,
                status_checks=row["status_checks"],
                unsettled_s=self._unsettled_s(row) if claim.kind == "lookup" else 0.0,
            )
        else:
            log.warning(
                "platform call failed", kind=claim.kind, error=error.reason, attempts=attempts
            )
            t = after_failure(
                claim.kind,
                error,
                attempts=attempts,
                lookups=row["lookups"],
                status_checks=row["status_checks"],
                reference=row["platform_reference"],
                policy=self._policy,
            )
        next_at = utcnow() + timedelta(seconds=t.delay_s)
        reason = t.reason
        if error is not None and not t.announce and self.breaker.waiting():
            # Retried later anyway: not before the circuit lets calls through, and say why.
            next_at = max(next_at, self.breaker.resume_at())
            reason = self.breaker.reason or reason
        update = Update(
            escalation_id=row["escalation_id"],
            claimed_at=row["claimed_at"],
            attempt_id=claim.attempt_id,
            state=t.state,
            next_action_at=next_at,
            decision=t.decision,
            platform_reference=t.reference,
            reason=reason,
            result=t.attempt_result,
            http_status=t.http_status,
            error=t.error,
            sent_at=sent[0] if sent and claim.kind == "submit" else None,
            # A probe's submit that may have arrived is looked up next, never re-sent;
            # it still does not count as one of the escalation's attempts.
            uncounted=probe and isinstance(error, RetryableError) and claim.kind == "submit",
        )
        reached = (
            Reached(
                row["escalation_id"],
                t.state,
                attempts,
                utcnow(),
                decision=t.decision,
                reference=t.reference,
                reason=t.reason,
            )
            if t.announce
            else None
        )
        return Step(update, reached)

    def call_budget_s(self) -> float:
        """The longest one call may take: the HTTP client's own timeout plus a margin."""
        return self._settings.platform_timeout_s + 1.0

    def claim_limit(self) -> int:
        """How many escalations one step may claim, so that every claim is finished well
        within its lease (or another worker would reconcile it while it is still in hand).

        All loops of this platform share `platform_concurrency` slots, each call taking at
        most `call_budget_s`, and the rate limit: the claims of all loops must get through
        both within half the lease.
        """
        s = self._settings
        half_lease = s.escalation_claim_lease_s / 2
        by_slots = s.platform_concurrency * half_lease / self.call_budget_s()
        by_rate = s.platform_rate_per_s * half_lease
        fits = int(min(by_slots, by_rate) / s.escalation_loops_per_platform)
        return max(1, min(s.escalation_claim_batch, fits))

    async def step(self) -> int:
        """Claim and handle one batch of due escalations; returns how many were claimed.

        An unexpected exception (a bug, not a platform's answer) is raised after the other
        claims' results are stored; its own claim stays held until the lease expires and is
        then reconciled by lookup, since whether its call went out is unknown.
        """
        s = self._settings
        # Measured from before the claim (and before waiting for a connection): no call
        # starts so late that it could still be running when the lease expires.
        deadline = asyncio.get_running_loop().time() + s.escalation_claim_lease_s
        deadline -= self.call_budget_s() + 1.0
        await self._mark_backlog()
        if self.breaker.waiting():
            return 0
        # Half-open: claim just what the single probe needs.
        limit = self.claim_limit() if self.breaker.state == "closed" else 1
        lost: list[uuid.UUID] = []
        async with self._db.pool.acquire() as conn, conn.transaction():
            claims = await claim_due(
                conn,
                self.adapter.slug,
                limit,
                s.escalation_claim_lease_s,
                urgency_order=claim_order(),
                lost_attempts=lost,
            )
            if lost:  # reclaimed: the attempts its dead holder left open end as `lost`
                await self._outbox.add(conn, await attempt_messages(conn, lost))
        if lost:
            self._outbox.wake()
        if not claims:
            return 0
        errors = await self._act_and_store(claims, deadline)
        await self._mark_backlog()
        if errors:
            raise errors[0]
        return len(claims)

    async def _act_and_store(self, claims: list[Claim], deadline: float) -> list[BaseException]:
        """Make every claim's call and store each result as soon as it is in: whatever
        finished while one store ran goes in the next, so one slow call never holds the
        batch's other outcomes back (and stores still group when calls finish together).
        Returns the unexpected exceptions (bugs), after storing everything else. Cancelled
        (the loop stopping past its timeout), it cancels the calls still running."""
        pending = {asyncio.ensure_future(self._act(c, deadline)) for c in claims}
        errors: list[BaseException] = []
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                steps: list[Step] = []
                releases: list[Release] = []
                for task in done:
                    error = task.exception()
                    if error is not None:
                        errors.append(error)
                        continue
                    acted = task.result()
                    if isinstance(acted, Step):
                        steps.append(acted)
                    else:
                        releases.append(acted)
                await self._store(steps, releases)
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        return errors

    async def _mark_backlog(self) -> None:
        """While the circuit is open, the platform's waiting escalations are due when the
        probe may go and carry the circuit's reason (one statement, whatever the backlog);
        once it closed, the reason is cleared."""
        reason = self.breaker.reason
        if self.breaker.state == "open" and reason is not None and self._park_due:
            self._park_due = False
            async with self._db.pool.acquire() as conn:
                n = await park(conn, self.adapter.slug, self.breaker.resume_at(), reason)
            self._parked = True
            log.info("escalations wait for the circuit", platform=self.adapter.slug, count=n)
        elif self.breaker.state == "closed" and self._parked:
            self._parked = False
            async with self._db.pool.acquire() as conn:
                await unpark(conn, self.adapter.slug)

    async def _store(self, steps: list[Step], releases: list[Release]) -> None:
        """New states, finished attempts and outcome events (one per linked case) and each
        finished attempt's activity event, in one transaction; claims released before
        their call go back as they were. The links
        are read after the update has locked the escalations' rows, so a case linking at
        the same moment hears the new state either here or from its own catch-up."""
        if not steps and not releases:
            return
        async with self._db.pool.acquire() as conn, conn.transaction():
            await release_claims(conn, releases)
            applied = await apply_updates(conn, [st.update for st in steps])
            outcomes = await announce(
                conn,
                [
                    st.reached
                    for st in steps
                    if st.reached is not None and st.update.escalation_id in applied
                ],
            )
            activity = await attempt_messages(
                conn,
                [st.update.attempt_id for st in steps] + [r.attempt_id for r in releases],
            )
            await self._outbox.add(conn, outcomes + activity)
        self._outbox.wake()

    async def _step(self) -> bool:
        return await self.step() > 0

    def start(self) -> None:
        """Start the step loops. Several per platform overlap one step's database work
        with another's platform calls; the calls share one concurrency bound. After a
        database outage a loop resumes as soon as the database answers again (its only
        dependency: outcomes go to the outbox table; a platform's failures are its
        breaker's business, never a loop's)."""
        for n in range(self._settings.escalation_loops_per_platform):
            loop = WorkLoop(
                f"dispatch-{self.adapter.slug}-{n}",
                self._step,
                idle_s=self._settings.escalation_poll_interval_s,
                probes=[self._db.ready],
            )
            self._loops.append(loop)
            loop.start()

    async def stop(self, timeout_s: float) -> None:
        """Stop after the current steps, so their calls' results are stored; cut them at
        timeout. A step cut short leaves its escalations claimed; they are reconciled by
        lookup once the lease expires."""
        loops, self._loops = self._loops, []
        await asyncio.gather(*(loop.stop(timeout_s) for loop in loops))


class Dispatcher:
    """All platform workers of one escalator process (and its hotline worker, if the
    hotline is configured)."""

    def __init__(
        self, workers: dict[str, PlatformWorker], hotline: HotlineWorker | None = None
    ) -> None:
        self.workers = workers
        self.hotline = hotline

    def wake(self, platforms: set[str], *, hotline: bool = False) -> None:
        for slug in platforms:
            if slug in self.workers:
                self.workers[slug].wake()
        if hotline and self.hotline is not None:
            self.hotline.wake()

    def adapter_for(self, platform: str, route: str) -> PlatformAdapter | None:
        """The adapter a route's calls on `platform` go to: the hotline's for the hotline
        route, else the platform's own (None when neither is running here)."""
        if route == "hotline":
            return self.hotline.adapter if self.hotline is not None else None
        worker = self.workers.get(platform)
        return worker.adapter if worker is not None else None

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()
        if self.hotline is not None:
            self.hotline.start()

    async def stop(self, timeout_s: float) -> None:
        await asyncio.gather(
            *(w.stop(timeout_s) for w in self.workers.values()),
            *([self.hotline.stop(timeout_s)] if self.hotline is not None else []),
        )


_HOTLINE_CLAIM = """
UPDATE escalator.escalations e
SET claimed_at = now(), updated_at = now(), attempts = e.attempts + 1
FROM (SELECT escalation_id FROM escalator.escalations
      WHERE route = 'hotline' AND state = 'needs_manual' AND platform_reference IS NULL
        AND withdraw_requested_at IS NULL AND next_action_at <= now() AND attempts < $3
        AND (claimed_at IS NULL OR claimed_at < now() - make_interval(secs => $1))
      ORDER BY next_action_at
      LIMIT $2
      FOR UPDATE SKIP LOCKED) d
WHERE e.escalation_id = d.escalation_id
RETURNING e.*
"""


class HotlineWorker:
    """Reports every hotline-route escalation (child sexual imagery) to the national
    hotline, whatever its platform: never to the platform's notice channel.

    The escalation was announced `needs_manual` when it opened (it stays on the
    practitioners' queue); once the hotline accepted the report it is `submitted`, its
    platform reference the hotline's, and waits for a practitioner (never polled). A
    report is claimed with an attempt (kind `hotline_report`) before the call, like a
    platform's notice; the hotline answers a repeated report with the same reference, so
    an unclear answer is simply reported again, backing off, up to `max_attempts`; then
    (or when the hotline refuses it) it is announced `needs_manual` again saying the
    practitioner must report it by hand. Each finished attempt is an activity event."""

    def __init__(
        self, adapter: HotlineAdapter, db: Database, outbox: Outbox, settings: Settings
    ) -> None:
        self.adapter = adapter
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._policy = Policy(
            max_attempts=settings.escalation_max_attempts,
            retry_base_s=settings.escalation_retry_base_s,
            retry_max_s=settings.escalation_retry_max_s,
            status_interval_s=settings.escalation_status_interval_s,
        )
        self._loop = WorkLoop(
            "hotline",
            self._step,
            idle_s=settings.escalation_poll_interval_s,
            probes=[db.ready],
        )

    def wake(self) -> None:
        self._loop.wake()

    def start(self) -> None:
        self._loop.start()

    async def stop(self, timeout_s: float) -> None:
        await self._loop.stop(timeout_s)

    async def _step(self) -> bool:
        return await self.step() > 0

    async def step(self) -> int:
        """Claim and report one batch; returns how many were claimed."""
        s = self._settings
        async with self._db.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                _HOTLINE_CLAIM,
                s.escalation_claim_lease_s,
                s.escalation_claim_batch,
                s.escalation_max_attempts,
            )
            lost = await conn.fetch(
                """UPDATE escalator.attempts SET result = 'lost', finished_at = now(),
                       error = 'process stopped during the call; its claim expired'
                   WHERE escalation_id = ANY($1::uuid[]) AND result IS NULL
                   RETURNING attempt_id""",
                [r["escalation_id"] for r in rows],
            )
            attempts = [uuid.uuid4() for _ in rows]
            await conn.execute(
                """INSERT INTO escalator.attempts (attempt_id, escalation_id, kind)
                   SELECT a, e, 'hotline_report' FROM unnest($1::uuid[], $2::uuid[]) AS u(a, e)""",
                attempts,
                [r["escalation_id"] for r in rows],
            )
            await self._outbox.add(
                conn, await attempt_messages(conn, [r["attempt_id"] for r in lost])
            )
        if not rows:
            return 0
        results = await asyncio.gather(*(self._report(row) for row in rows))
        async with self._db.pool.acquire() as conn, conn.transaction():
            messages: list[OutgoingMessage] = []
            for row, attempt_id, (result, error) in zip(rows, attempts, results, strict=True):
                messages += await self._store(conn, row, attempt_id, result, error)
            await self._outbox.add(conn, messages)
        self._outbox.wake()
        return len(rows)

    async def _report(self, row: Any) -> tuple[Receipt | None, AdapterError | None]:
        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            try:
                result = await asyncio.wait_for(
                    self.adapter.report(notice_for(row, self._settings), row["platform"]),
                    self._settings.platform_timeout_s + 1.0,
                )
            except TimeoutError:
                return None, RetryableError("hotline: no answer within the call budget")
            except AdapterError as exc:
                log.warning("hotline report failed", error=exc.reason)
                return None, exc
            return result, None

    async def _store(
        self,
        conn: Conn,
        row: Any,
        attempt_id: uuid.UUID,
        result: Receipt | None,
        error: AdapterError | None,
    ) -> list[OutgoingMessage]:
        eid, claimed = row["escalation_id"], row["claimed_at"]
        if error is None:
            outcome, status = "ok", result.http_status if result is not None else None
        else:
            outcome = "retryable" if isinstance(error, RetryableError) else "permanent"
            status = error.http_status
        await conn.execute(
            """UPDATE escalator.attempts
               SET finished_at = now(), result = $2, http_status = $3, error = $4
               WHERE attempt_id = $1""",
            attempt_id,
            outcome,
            status,
            None if error is None else error.reason,
        )
        messages = await attempt_messages(conn, [attempt_id])
        reached: Reached | None = None
        if result is not None:
            moved = await conn.fetchval(
                """UPDATE escalator.escalations
                   SET state = 'submitted', platform_reference = $3, claimed_at = NULL,
                       next_action_at = $4, updated_at = now()
                   WHERE escalation_id = $1 AND claimed_at = $2 RETURNING 1""",
                eid,
                claimed,
                result.reference,
                NEVER,
            )
            if moved:
                reached = Reached(
                    eid,
                    "submitted",
                    row["attempts"],
                    utcnow(),
                    reference=result.reference,
                    reason=HOTLINE_REASON,
                )
        else:
            assert error is not None
            give_up = (
                not isinstance(error, RetryableError)
                or row["attempts"] >= self._policy.max_attempts
            )
            reason = (
                f"child sexual imagery: the national hotline did not take the report "
                f"({error.reason}); report it to the hotline by hand"
                if give_up
                else HOTLINE_REASON
            )
            delay = self._policy.backoff(row["attempts"], getattr(error, "retry_after_s", None))
            moved = await conn.fetchval(
                """UPDATE escalator.escalations
                   SET claimed_at = NULL, next_action_at = $3, reason = $4, updated_at = now(),
                       attempts = CASE WHEN $5 THEN $6 ELSE attempts END
                   WHERE escalation_id = $1 AND claimed_at = $2 RETURNING 1""",
                eid,
                claimed,
                NEVER if give_up else utcnow() + timedelta(seconds=delay),
                reason,
                give_up,
                self._policy.max_attempts,
            )
            if moved and give_up:
                reached = Reached(
                    eid,
                    "needs_manual",
                    row["attempts"],
                    utcnow(),
                    reason=reason,
                    occurrence=f"hotline-refused-{attempt_id}",
                )
        if reached is not None:
            messages += await announce(conn, [reached])
        return messages
