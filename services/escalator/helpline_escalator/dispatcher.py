"""Per-platform dispatch: submit notices, chase decisions, reconcile interrupted calls.

One worker per platform, each with its own concurrency bound and rate limit, so a slow or
failing platform never holds up another. A worker claims due escalations and records an
attempt for each in one transaction *before* calling the platform; it then writes the new
states, finishes the attempts and queues the outcome events in one transaction (the
outbox), so an outcome is published if and only if its state is stored. An escalation
whose claim outlived the lease (the process died mid-call) is looked up on the platform by
our reference and never blindly re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiolimiter import AsyncLimiter

from helpline_escalator.adapters.base import (
    AdapterError,
    NeedsManualError,
    Notice,
    PermanentError,
    PlatformAdapter,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.outcomes import outcome_message
from helpline_escalator.repository import Claim, Update, apply_updates, claim_due
from helpline_shared.db import Database
from helpline_shared.events import utcnow
from helpline_shared.kafka import OutgoingMessage
from helpline_shared.logging import bind_event, get_logger
from helpline_shared.outbox import Outbox
from helpline_shared.settings import Settings

log = get_logger("helpline.escalator.dispatch")


@dataclass(frozen=True)
class Step:
    update: Update
    outcome: OutgoingMessage | None


def notice_for(row: object, settings: Settings) -> Notice:
    r = row  # asyncpg.Record
    harm = tuple(r["harm_types"])  # type: ignore[index]
    return Notice(
        client_reference=r["escalation_id"],  # type: ignore[index]
        url=r["url"],  # type: ignore[index]
        harm_types=harm,
        urgency=r["urgency"],  # type: ignore[index]
        explanation=(
            "Reported to the helpline by a professional working with children. "
            f"Harm: {', '.join(h.replace('_', ' ') for h in harm)}; urgency: "
            f"{r['urgency']}. The content targets school staff, pupils or a school "  # type: ignore[index]
            "and breaches the platform's terms; we ask for its removal."
        ),
        notifier_name=settings.notifier_name,
        notifier_email=settings.notifier_email,
    )


class PlatformWorker:
    def __init__(
        self, adapter: PlatformAdapter, db: Database, outbox: Outbox, settings: Settings
    ) -> None:
        self.adapter = adapter
        self._db = db
        self._outbox = outbox
        self._settings = settings
        self._limiter = AsyncLimiter(settings.platform_rate_per_s, 1)
        self._in_flight = asyncio.Semaphore(settings.platform_concurrency)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    def _backoff(self, attempts: int, retry_after: float | None) -> datetime:
        s = self._settings
        delay = min(s.escalation_retry_max_s, s.escalation_retry_base_s * 2 ** (attempts - 1))
        if retry_after is not None:
            delay = max(delay, retry_after)
        return utcnow() + timedelta(seconds=delay)

    async def _call(self, claim: Claim) -> PlatformResult | None:
        """One platform call, once a concurrency slot and the rate limit allow it."""
        row = claim.row
        call: Coroutine[Any, Any, PlatformResult | None]
        async with self._in_flight, self._limiter:
            if claim.kind == "submit":
                call = self.adapter.submit(notice_for(row, self._settings))
            elif claim.kind == "status":
                call = self.adapter.status(row["platform_reference"])
            else:
                call = self.adapter.lookup(row["escalation_id"])
            return await asyncio.wait_for(call, self._settings.platform_timeout_s * 2)

    async def _act(self, claim: Claim) -> Step:
        row = claim.row
        attempts: int = row["attempts"]
        s = self._settings
        now = utcnow()

        def update(state: str, result: str, **kw: object) -> Update:
            fields: dict[str, object] = {
                "next_action_at": now,
                "decision": None,
                "platform_reference": None,
                "reason": None,
                "http_status": None,
                "error": None,
            }
            fields.update(kw)
            return Update(
                escalation_id=row["escalation_id"],
                attempt_id=claim.attempt_id,
                state=state,
                result=result,
                **fields,  # type: ignore[arg-type]
            )

        with bind_event(case_id=row["case_id"], event_id=row["escalation_id"]):
            try:
                result = await self._call(claim)
            except TimeoutError:
                result = None
                error: AdapterError | None = RetryableError("timed out")
            except AdapterError as exc:
                error = exc
            else:
                error = None
            if error is None and result is None:
                # Lookup found nothing: the interrupted submit never arrived; send it now.
                log.info("interrupted submit not received by platform; re-queued")
                return Step(update("queued", "ok"), None)
            if error is None:
                assert result is not None
                if result.decision is not None:
                    return Step(
                        update(
                            "decided",
                            "ok",
                            decision=result.decision,
                            platform_reference=result.reference,
                        ),
                        outcome_message(
                            row,
                            state="decided",
                            attempts=attempts,
                            decision=result.decision,
                            reference=result.reference,
                        ),
                    )
                next_at = now + timedelta(seconds=s.escalation_status_interval_s)
                announce = claim.kind != "status"
                return Step(
                    update(
                        "submitted",
                        "ok",
                        platform_reference=result.reference,
                        next_action_at=next_at,
                    ),
                    outcome_message(
                        row, state="submitted", attempts=attempts, reference=result.reference
                    )
                    if announce
                    else None,
                )
            log.warning(
                "platform call failed", kind=claim.kind, error=error.reason, attempts=attempts
            )
            if isinstance(error, NeedsManualError):
                return Step(
                    update("needs_manual", "permanent", reason=error.reason, error=error.reason),
                    outcome_message(
                        row, state="needs_manual", attempts=attempts, reason=error.reason
                    ),
                )
            retry_after = error.retry_after_s if isinstance(error, RetryableError) else None
            if claim.kind == "status":
                # Chasing failed: keep the submission, chase again later.
                return Step(
                    update(
                        "submitted",
                        "retryable",
                        http_status=error.http_status,
                        error=error.reason,
                        platform_reference=row["platform_reference"],
                        next_action_at=self._backoff(1, retry_after)
                        + timedelta(seconds=s.escalation_status_interval_s),
                    ),
                    None,
                )
            state_after_failure = "in_flight" if claim.kind == "lookup" else None
            if isinstance(error, PermanentError) or attempts >= s.escalation_max_attempts:
                reason = (
                    error.reason
                    if isinstance(error, PermanentError)
                    else f"gave up after {attempts} attempts: {error.reason}"
                )
                return Step(
                    update(
                        "failed",
                        "permanent" if isinstance(error, PermanentError) else "retryable",
                        reason=reason,
                        http_status=error.http_status,
                        error=error.reason,
                    ),
                    outcome_message(row, state="failed", attempts=attempts, reason=reason),
                )
            return Step(
                update(
                    state_after_failure or "retrying",
                    "retryable",
                    http_status=error.http_status,
                    error=error.reason,
                    reason=error.reason,
                    next_action_at=self._backoff(attempts, retry_after),
                ),
                None,
            )

    async def step(self) -> int:
        """Claim and handle one batch of due escalations; returns how many were claimed."""
        s = self._settings
        async with self._db.pool.acquire() as conn, conn.transaction():
            claims = await claim_due(
                conn, self.adapter.slug, s.escalation_claim_batch, s.escalation_claim_lease_s
            )
        if not claims:
            return 0
        steps = await asyncio.gather(*(self._act(c) for c in claims))
        async with self._db.pool.acquire() as conn, conn.transaction():
            await apply_updates(conn, [st.update for st in steps])
            await self._outbox.add(conn, [st.outcome for st in steps if st.outcome is not None])
        self._outbox.wake()
        return len(claims)

    async def _run(self) -> None:
        failures = 0
        while not self._stopping:
            try:
                claimed = await self.step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("dispatch step failed", platform=self.adapter.slug)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
                continue
            if claimed:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.escalation_poll_interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dispatch-{self.adapter.slug}")

    async def stop(self, timeout_s: float) -> None:
        """Stop after the current step, so its calls' results are stored; cut it at timeout.

        A step cut short leaves its escalations claimed; they are reconciled by lookup once
        the lease expires.
        """
        if self._task is None:
            return
        task, self._task = self._task, None
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class Dispatcher:
    """All platform workers of one escalator process."""

    def __init__(self, workers: dict[str, PlatformWorker]) -> None:
        self.workers = workers

    def wake(self, platforms: set[str]) -> None:
        for slug in platforms:
            if slug in self.workers:
                self.workers[slug].wake()

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    async def stop(self, timeout_s: float) -> None:
        await asyncio.gather(*(w.stop(timeout_s) for w in self.workers.values()))
