"""What a platform call's result means for its escalation: the next state, when to act
again, and which outcome (if any) to announce.

Pure functions, so every branch of the state machine is tested without I/O. The rules
that keep a URL from being sent twice: a submit whose fate is unknown (timeout, dropped
connection, a 5xx other than 503) is *looked up* next, never re-sent; only a lookup that
finds nothing once the platform's settle period has passed since the notice was sent
re-queues it (a platform that timed out may store the notice later). A lookup that fails
keeps the escalation in flight; if the platform cannot tell (a refusal, or `max_attempts`
failed lookups, backing off), a person decides (`needs_manual`). A pending decision is
chased at a doubling interval up to a cap (`status_max_s`), and so are failed status
checks: chasing never repeats at a fixed rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helpline_escalator.adapters.base import (
    AdapterError,
    NeedsManualError,
    PermanentError,
    PlatformResult,
    RetryableError,
)


@dataclass(frozen=True)
class Policy:
    max_attempts: int
    retry_base_s: float
    retry_max_s: float
    status_interval_s: float
    status_max_s: float = 3600.0

    def backoff(self, attempts: int, retry_after_s: float | None) -> float:
        delay = min(self.retry_max_s, self.retry_base_s * 2 ** max(0, attempts - 1))
        return float(max(delay, retry_after_s or 0.0))

    def status_delay(self, checks: int) -> float:
        """When to ask again about a pending decision after `checks` status checks: the
        interval doubles with each check, up to `status_max_s`."""
        return float(min(self.status_max_s, self.status_interval_s * 2 ** min(checks, 60)))


@dataclass(frozen=True)
class Transition:
    state: str
    attempt_result: str  # ok | retryable | permanent
    delay_s: float = 0.0
    decision: str | None = None
    reference: str | None = None
    reason: str | None = None
    http_status: int | None = None
    error: str | None = None
    announce: bool = False  # publish an outcome event for `state`


def after_success(
    kind: str,
    result: PlatformResult | None,
    *,
    attempts: int,
    policy: Policy,
    status_checks: int = 0,
    unsettled_s: float = 0.0,
) -> Transition:
    """`unsettled_s`: for a lookup, how much of the platform's settle period is left since
    the notice was last sent (0 once it has passed)."""
    if result is None and unsettled_s > 0:
        # Nothing yet, but the platform may still store what it received: ask again later.
        return Transition("in_flight", "ok", delay_s=unsettled_s)
    if result is None:  # a lookup found nothing after the settle period: it never arrived
        if attempts >= policy.max_attempts:
            reason = f"gave up after {attempts} attempts: the platform never received it"
            return Transition("failed", "ok", reason=reason, announce=True)
        return Transition("queued", "ok")
    if result.decision is not None:
        return Transition(
            "decided",
            "ok",
            decision=result.decision,
            reference=result.reference,
            http_status=result.http_status,
            announce=True,
        )
    return Transition(
        "submitted",
        "ok",
        delay_s=policy.status_delay(status_checks),
        reference=result.reference,
        http_status=result.http_status,
        announce=kind != "status",  # announced once, when first known
    )


def after_failure(
    kind: str,
    error: AdapterError,
    *,
    attempts: int,
    reference: str | None,
    policy: Policy,
    lookups: int = 0,
    status_checks: int = 0,
) -> Transition:
    def fail(state: str, result: str, **kw: Any) -> Transition:
        return Transition(state, result, http_status=error.http_status, error=error.reason, **kw)

    retry_after = error.retry_after_s if isinstance(error, RetryableError) else None
    if isinstance(error, NeedsManualError):
        return fail(
            "needs_manual",
            "permanent",
            reason=error.reason,
            reference=error.reference or reference,
            announce=True,
        )
    if kind == "status":
        if isinstance(error, PermanentError):
            reason = f"the platform no longer answers for its reference: {error.reason}"
            return fail(
                "needs_manual", "permanent", reference=reference, reason=reason, announce=True
            )
        # Failures back off like pending answers (to the cap), or later if asked to.
        delay = max(policy.status_delay(status_checks), retry_after or 0.0)
        return fail("submitted", "retryable", delay_s=delay, reference=reference)
    if kind == "lookup":
        if isinstance(error, PermanentError) or lookups >= policy.max_attempts:
            reason = f"cannot confirm whether the platform received it: {error.reason}"
            return fail("needs_manual", "permanent", reason=reason, announce=True)
        return fail("in_flight", "retryable", delay_s=policy.backoff(lookups, retry_after))
    # submit
    if isinstance(error, PermanentError):
        return fail("failed", "permanent", reason=error.reason, announce=True)
    assert isinstance(error, RetryableError)
    if error.maybe_received:
        # It may have arrived: find out before sending anything again.
        return fail("in_flight", "retryable", delay_s=policy.backoff(attempts, retry_after))
    if attempts >= policy.max_attempts:
        reason = f"gave up after {attempts} attempts: {error.reason}"
        return fail("failed", "retryable", reason=reason, announce=True)
    return fail(
        "retrying", "retryable", delay_s=policy.backoff(attempts, retry_after), reason=error.reason
    )
