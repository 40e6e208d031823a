"""Every branch of the escalation state machine (pure, no I/O)."""

from __future__ import annotations

import pytest

from helpline_escalator.adapters.base import (
    NeedsManualError,
    PermanentError,
    PlatformResult,
    RetryableError,
)
from helpline_escalator.transitions import Policy, Transition, after_failure, after_success

POLICY = Policy(max_attempts=3, retry_base_s=1.0, retry_max_s=10.0, status_interval_s=5.0)


def fail(kind: str, error: Exception, attempts: int = 1) -> Transition:
    return after_failure(kind, error, attempts=attempts, reference="ref-1", policy=POLICY)  # type: ignore[arg-type]


def test_decision_is_final_and_announced() -> None:
    t = after_success("submit", PlatformResult("r", "removed"), attempts=1, policy=POLICY)
    assert (t.state, t.decision, t.reference, t.announce) == ("decided", "removed", "r", True)


@pytest.mark.parametrize(
    ("kind", "announce"), [("submit", True), ("lookup", True), ("status", False)]
)
def test_pending_is_chased_and_announced_once(kind: str, announce: bool) -> None:
    t = after_success(kind, PlatformResult("r"), attempts=1, policy=POLICY)
    assert (t.state, t.delay_s, t.announce) == ("submitted", 5.0, announce)


def test_lookup_that_finds_nothing_requeues_until_the_last_attempt() -> None:
    assert after_success("lookup", None, attempts=2, policy=POLICY).state == "queued"
    last = after_success("lookup", None, attempts=3, policy=POLICY)
    assert (last.state, last.announce) == ("failed", True)


def test_submit_that_may_have_arrived_is_looked_up_not_resent() -> None:
    for error in (
        RetryableError("timeout", maybe_received=True),
        RetryableError("502", http_status=502, maybe_received=True),
    ):
        t = fail("submit", error, attempts=3)  # even on the last attempt
        assert t.state == "in_flight"
        assert not t.announce


def test_submit_refused_for_now_retries_with_backoff_then_fails() -> None:
    t = fail("submit", RetryableError("429", http_status=429, retry_after_s=7.0), attempts=1)
    assert (t.state, t.delay_s, t.http_status) == ("retrying", 7.0, 429)
    t = fail("submit", RetryableError("503", http_status=503), attempts=2)
    assert (t.state, t.delay_s) == ("retrying", 2.0)
    t = fail("submit", RetryableError("503", http_status=503), attempts=3)
    assert (t.state, t.announce) == ("failed", True)
    assert t.reason is not None
    assert "gave up after 3 attempts" in t.reason


def test_backoff_is_capped() -> None:
    assert POLICY.backoff(20, None) == 10.0


def test_permanent_refusal_fails_at_once() -> None:
    t = fail("submit", PermanentError("400 bad notice", http_status=400))
    assert (t.state, t.attempt_result, t.announce, t.http_status) == (
        "failed",
        "permanent",
        True,
        400,
    )


def test_needs_manual_from_any_call() -> None:
    for kind in ("submit", "status", "lookup"):
        t = fail(kind, NeedsManualError("no channel"))
        assert (t.state, t.reason, t.announce) == ("needs_manual", "no channel", True)


def test_status_failures_keep_the_submission() -> None:
    t = fail("status", RetryableError("timeout", maybe_received=True), attempts=3)
    assert (t.state, t.reference, t.announce) == ("submitted", "ref-1", False)
    assert t.delay_s == 5.0
    t = fail("status", PermanentError("404", http_status=404))
    assert (t.state, t.reference, t.announce) == ("needs_manual", "ref-1", True)


def test_failed_lookups_back_off_then_hand_over_to_a_person() -> None:
    unclear = RetryableError("500", http_status=500, maybe_received=True)
    delays = []
    for lookups in (1, 2):
        t = after_failure(
            "lookup", unclear, attempts=1, lookups=lookups, reference=None, policy=POLICY
        )
        assert (t.state, t.announce) == ("in_flight", False)
        delays.append(t.delay_s)
    assert delays == [1.0, 2.0]
    t = after_failure("lookup", unclear, attempts=1, lookups=3, reference=None, policy=POLICY)
    assert (t.state, t.announce) == ("needs_manual", True)
    t = fail("lookup", PermanentError("refused", http_status=400))
    assert (t.state, t.announce) == ("needs_manual", True)


def test_chasing_a_pending_decision_backs_off_to_the_cap() -> None:
    """Hole 9: a pending decision was polled every 5 s forever."""
    policy = Policy(
        max_attempts=3, retry_base_s=1.0, retry_max_s=10.0, status_interval_s=5.0, status_max_s=30.0
    )
    pending = [
        after_success("status", PlatformResult("r"), attempts=1, policy=policy, status_checks=n)
        for n in range(1, 6)
    ]
    assert [t.delay_s for t in pending] == [10.0, 20.0, 30.0, 30.0, 30.0]


def test_failed_status_checks_back_off_to_the_cap_and_honour_retry_after() -> None:
    """Hole 9: retryable status failures repeated at a fixed interval with no cap."""
    policy = Policy(
        max_attempts=3, retry_base_s=1.0, retry_max_s=10.0, status_interval_s=5.0, status_max_s=30.0
    )
    error = RetryableError("503", http_status=503)
    delays = [
        after_failure(
            "status", error, attempts=1, reference="r", policy=policy, status_checks=n
        ).delay_s
        for n in range(1, 6)
    ]
    assert delays == [10.0, 20.0, 30.0, 30.0, 30.0]
    late = RetryableError("429", http_status=429, retry_after_s=120.0)
    t = after_failure("status", late, attempts=1, reference="r", policy=policy, status_checks=1)
    assert t.delay_s == 120.0


def test_a_lookup_that_finds_nothing_before_the_settle_period_looks_again() -> None:
    """Hole 6: "not found" soon after an unclear submit is not proof it never arrived."""
    t = after_success("lookup", None, attempts=1, policy=POLICY, unsettled_s=42.0)
    assert (t.state, t.delay_s, t.announce) == ("in_flight", 42.0, False)
    assert after_success("lookup", None, attempts=1, policy=POLICY, unsettled_s=0).state == (
        "queued"
    )
